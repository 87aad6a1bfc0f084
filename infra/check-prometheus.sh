#!/usr/bin/env bash
# Checks the Prometheus files of infra/: the configuration (with the rule files it loads) and the alert
# rules' unit tests. promtool comes with Debian's prometheus package (infra/install.sh).
# Usage: infra/check-prometheus.sh
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

command -v promtool >/dev/null 2>&1 || bash "$AT_INFRA_DIR/install.sh"
command -v promtool >/dev/null 2>&1 || at_die "promtool is missing (Debian's prometheus package): infra/install.sh did not install it"
cd "$AT_INFRA_DIR"
promtool check config prometheus.yml
promtool test rules alerts.test.yml
