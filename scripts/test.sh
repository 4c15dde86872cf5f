#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite through tox.
#   scripts/test.sh                 py311 + lint (what CI runs)
#   TOX_ENVS=ALL scripts/test.sh    py311, py312, py313 and lint
#   scripts/test.sh -- -k e2e       extra arguments go to pytest
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
ENVS="${TOX_ENVS:-py311,lint}"
[ "$ENVS" = "ALL" ] && ENVS="py311,py312,py313,lint"
exec "$VENV/bin/tox" run -e "$ENVS" "$@"
