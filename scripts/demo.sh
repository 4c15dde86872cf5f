#!/usr/bin/env bash
# Set up everything on a fresh machine, bring up topologies/demo.yaml, ask it one
# question, print the private total, and bring it down again.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
HIVE="$VENV/bin/hive"
TOPOLOGY="${1:-topologies/demo.yaml}"
STATE="$(mktemp -d /tmp/beehive-demo.XXXXXX)"
trap '"$HIVE" down "$TOPOLOGY" --state-dir "$STATE" --purge >/dev/null 2>&1 || true' EXIT

"$HIVE" validate -f "$TOPOLOGY"
"$HIVE" up "$TOPOLOGY" --state-dir "$STATE"
"$HIVE" submit "What is your secret value" -f "$TOPOLOGY" --state-dir "$STATE" \
  --proposer alice --aggregators alice,bob --targets charlie,dave,eve --wait
"$HIVE" down "$TOPOLOGY" --state-dir "$STATE" --purge
trap - EXIT
