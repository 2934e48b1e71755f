#!/bin/sh
# How datasets/foreign_traces/ was collected (issue 21 item 4): programs a user would run that are
# not in the workload registry and that no model trains on, traced on the host like the registry's
# workloads (python -m data.collect --command; root, tracefs). Run from the repository root on a
# quiet machine (--wait-quiet). Debian bookworm packages: xz-utils, bzip2, gcc, make, perl,
# sqlite3, busybox, curl (python3 and tar are there already).
set -eu
OUT=${OUT:-/var/tmp/schedlearn/foreign_traces}
S=${SECONDS_PER_RUN:-3}
W=$(mktemp -d)
trap 'kill $HTTPD 2>/dev/null || true; rm -rf "$W"' EXIT
# a C tree of 24 translation units for the build (the repository's own C, copied under new names)
mkdir -p "$W/src"
i=0
for f in data/parse/_fastparse.c data/dataset/_replay.c; do
	for k in 1 2 3 4 5 6 7 8 9 10 11 12; do i=$((i + 1)); cp "$f" "$W/src/u$i.c"; done
done
printf 'OBJ=$(patsubst %%.c,%%.o,$(wildcard *.c))\nall: $(OBJ)\n%%.o: %%.c\n\t$(CC) -O2 -fPIC -c $< -o $@\n' > "$W/src/Makefile"
# a web server (busybox httpd, one process per connection) for the load generator below
mkdir -p "$W/www" && head -c 200000 /usr/share/common-licenses/GPL-3 > "$W/www/index.html"
busybox httpd -f -p 127.0.0.1:18089 -h "$W/www" & HTTPD=$!
c() { python -m data.collect --command "$1" --name "$2" --out "$OUT" --seconds "$S" --wait-quiet 300; }
c "tar cf - /usr/lib/python3.11 2>/dev/null | xz -T2 -6 > /dev/null" xz-tar
c "tar cf - /usr/share/doc 2>/dev/null | bzip2 -9 > /dev/null" bzip2-tar
c "while :; do make -s -j2 -C $W/src CC=gcc; rm -f $W/src/*.o; done" gcc-make
c "python3 -m compileall -f -q -j 2 -d /x /usr/lib/python3.11 > /dev/null" python-compileall
c "perl -e 'for (1..4e6) { my \$s = \"ab\" x 20; \$s =~ s/b/c/g; \$h{\$_ % 1000} .= \"x\" }'" perl-strings
c "rm -f $W/db; sqlite3 $W/db 'create table t(a,b); with recursive c(x) as (select 1 union all select x+1 from c limit 200000) insert into t select x, randomblob(64) from c; create index i on t(b);' && while :; do sqlite3 $W/db 'begin; update t set a=a+1 where a%97=0; commit;'; done" sqlite-update
c "for p in 1 2 3 4; do (while :; do curl -s -o /dev/null http://127.0.0.1:18089/index.html; done) & done; wait" httpd-curl
