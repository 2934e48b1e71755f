# Sourced by every /init of the module tests (init.sh, init_hook.sh, init_debug.sh):
# busybox's applets, /proc, /sys and /dev, and the two helpers that print the SLM-*
# marker lines kernel/vm/console.py parses.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# query TAG: the module's status (/dev/schedlearn read) between BEGIN and END lines.
query() {
	echo "SLM-QUERY $1 BEGIN"
	cat /dev/schedlearn || echo "SLM-QUERY $1 read failed rc=$?"
	echo "SLM-QUERY $1 END"
}

# push BLOB [LABEL]: cat's exit status is the module's verdict on write().
push() {
	cat "/blobs/$1.blob" > /dev/schedlearn
	echo "SLM-PUSH ${2:-$1} rc=$?"
}
