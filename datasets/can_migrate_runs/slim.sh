#!/bin/sh
# The shipped copy of a collection (collect.sh): per run, meta.json and can_migrate.parquet (the
# decoded records, lossless: data.can_migrate.files reads it like the raw stream). The raw
# stream (can_migrate.bin.zst) and the half-second ftrace excerpt stay with the collector's
# output; together they would take the data folder past its 60 MB budget. Run from the
# repository root; datasets/forced_runs too:
#   OUT=/var/tmp/schedlearn/forced_runs SHIP=datasets/forced_runs sh datasets/can_migrate_runs/slim.sh
set -eu
OUT=${OUT:-/var/tmp/schedlearn/can_migrate_runs}
SHIP=${SHIP:-datasets/can_migrate_runs}
for d in "$OUT"/*/; do
	[ -f "$d/meta.json" ] && [ -f "$d/can_migrate.parquet" ] || continue
	r=$(basename "$d")
	mkdir -p "$SHIP/.$r.part"
	cp "$d/meta.json" "$SHIP/.$r.part/"
	# written again by the one records writer (runs collected before it kept a larger encoding)
	python -c 'import sys; from data.can_migrate.files import read_records as r, write_records_parquet as w; w(r(sys.argv[1]), sys.argv[2])' \
		"$d/can_migrate.parquet" "$SHIP/.$r.part/can_migrate.parquet"
	rm -rf "$SHIP/$r"
	mv "$SHIP/.$r.part" "$SHIP/$r"
done
