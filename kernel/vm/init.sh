#!/bin/busybox sh
# /init of the test initramfs.  Everything it learns goes to the serial
# console as SLM-* marker lines that tests/test_kernel_vm.py parses.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

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

echo "SLM-BOOT uptime=$(cut -d' ' -f1 /proc/uptime)"
insmod /schedlearn.ko
echo "SLM-INSMOD rc=$?"
dmesg | grep 'schedlearn: selftest' | sed 's/^/SLM-DMESG /'
query builtin
push model_b
query after_b
for f in /blobs/bad_*.blob; do
	push "$(basename "$f" .blob)"
done
query after_bad
rmmod schedlearn
echo "SLM-RMMOD rc=$?"
# The MAC bound is a module parameter: a valid blob above it must be refused.
insmod /schedlearn.ko max_macs=1 && push model_b over_bound && rmmod schedlearn
dmesg | grep 'schedlearn:' | sed 's/^/SLM-DMESG /'
echo "SLM-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
