#!/usr/bin/env bash
# Regenerate docs/sample-report-p1.png and -p2.png: the health report of the demo patient with the most
# observations, from a throwaway SQLite demo (needs poppler-utils for pdftoppm). Usage: docs/sample_report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARELOOP_DATABASE_URL="sqlite:///$work/demo.db"
PY=.venv/bin/python
$PY manage.py init-db >/dev/null
$PY manage.py seed-demo --patients 300 --seed 20260101 >/dev/null
$PY manage.py run-automation >/dev/null
card="$($PY - <<'EOF'
import os
from sqlalchemy import create_engine, text
engine = create_engine(os.environ["CARELOOP_DATABASE_URL"])
with engine.connect() as conn:
    print(conn.execute(text(
        "SELECT p.card_no FROM patients p JOIN observations o ON o.patient_id = p.id "
        "GROUP BY p.id, p.card_no ORDER BY count(*) DESC, p.id LIMIT 1")).scalar_one())
EOF
)"
$PY manage.py report patient "$card" --out "$work/report.pdf" --lang zh
pdftoppm -png -r 90 -f 1 -l 2 "$work/report.pdf" "$work/page"
cp "$work"/page-1.png docs/sample-report-p1.png
cp "$work"/page-2.png docs/sample-report-p2.png
echo "docs/sample-report-p1.png, -p2.png: card $card"
