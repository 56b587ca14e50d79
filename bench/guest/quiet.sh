#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
# Wait (at most ~30 s) until the driver's snapshot threads (datto_snap_mrf*,
# datto_snap_cow*) have been idle for 5 polls in a row: neither running nor
# in an uninterruptible wait. Run by fio (exec_prerun) before a job that
# must not pay for the saving of the previous job's original data.
# Shell built-ins only, apart from sleep: a process start is slow under TCG.
pids=
for d in /proc/[0-9]*; do
	read -r c < "$d/comm" 2>/dev/null || continue
	case "$c" in
	datto_snap_cow* | datto_snap_mrf*) pids="$pids ${d#/proc/}" ;;
	esac
done
quiet=0
n=0
while [ "$quiet" -lt 5 ] && [ "$n" -lt 1500 ]; do
	busy=0
	for p in $pids; do
		read -r _ _ state _ < "/proc/$p/stat" 2>/dev/null || continue
		case "$state" in
		R | D) busy=1 ;;
		esac
	done
	if [ "$busy" = 1 ]; then quiet=0; else quiet=$((quiet + 1)); fi
	n=$((n + 1))
	sleep 0.02
done
