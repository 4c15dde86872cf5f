# Sourced by scripts/test.sh and scripts/demo.sh: one virtual environment, made once.
# BEEHIVE_VENV overrides where it lives (default: .venv in the repository).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BEEHIVE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment $VENV ($("$PYTHON" --version))"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import beehive, tox" >/dev/null 2>&1 \
   || [ "$ROOT/pyproject.toml" -nt "$VENV/.installed" ]; then
  echo "installing bee-hive and its dependencies into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]"
  touch "$VENV/.installed"
fi
