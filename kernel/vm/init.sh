#!/bin/busybox sh
# /init of the test initramfs.  Everything it learns goes to the serial
# console as SLM-* marker lines that tests/test_kernel_vm.py parses.
. /lib.sh  # busybox, /proc, /sys, /dev; query, push

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
# Privilege: uid/gid 65534 may neither push a model (the device is 0600) nor flip the
# hook or active parameters (0644); the serving model must stay model B, gen 1.
mkdir -p /etc
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' > /etc/passwd
echo 'nobody:x:65534:' > /etc/group
param=/sys/module/schedlearn/parameters
params() {
	echo "SLM-PARAMS $1 hook=$(cat $param/hook) active=$(cat $param/active)"
}
flip() {
	case $(cat "$1") in Y | 1) echo 0 ;; *) echo 1 ;; esac
}
# unpriv LABEL CMD: CMD as nobody; its exit status, its ids, the shell's error message.
unpriv() {
	out=$(su -s /bin/sh nobody -c 'echo "uid=$(id -u) gid=$(id -g)"; '"$2" 2>&1)
	rc=$?
	echo "SLM-UNPRIV $1 rc=$rc $(echo "$out" | head -n 1) err=$(echo "$out" | sed -n 2p)"
}
params before_unpriv
unpriv blob 'cat /blobs/model_b.blob > /dev/schedlearn'
unpriv hook "echo $(flip $param/hook) > $param/hook"
unpriv active "echo $(flip $param/active) > $param/active"
params after_unpriv
query after_unpriv
rmmod schedlearn
echo "SLM-RMMOD rc=$?"
# The MAC bound is a module parameter: a valid blob above it must be refused.
insmod /schedlearn.ko max_macs=1 && push model_b over_bound && rmmod schedlearn
dmesg | grep 'schedlearn:' | sed 's/^/SLM-DMESG /'
echo "SLM-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
