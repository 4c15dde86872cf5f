#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite through tox.
#   scripts/test.sh                 lint (ruff), type (mypy), py311 and wheel: what CI runs
#                                   (wheel: build the wheel, install it non-editable into a
#                                   fresh venv, up/submit/down from it)
#   TOX_ENVS=ALL scripts/test.sh    the same with py312 and py313 too
#   scripts/test.sh -- -k e2e       extra arguments go to pytest
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
ENVS="${TOX_ENVS:-lint,type,py311,wheel}"
# pyenv installs 3.12 and 3.13 beside the default, behind shims that answer only
# for the selected version: put their real bin folders on PATH for tox to find.
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare | grep -E '^3\.1[23]\.[0-9]+$' | sort -V); do
    PATH="$(pyenv root)/versions/$v/bin:$PATH"
  done
  export PATH
fi
[ "$ENVS" = "ALL" ] && ENVS="lint,type,py311,py312,py313,wheel"
exec "$VENV/bin/tox" run -e "$ENVS" "$@"
