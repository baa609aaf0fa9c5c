#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# check-stacks.sh: check that every patch set under patches/ applies with zero fuzz to a
# pristine kernel tree, alone and in every stack the lab uses.
#
# usage: patches/check-stacks.sh [-v] PRISTINE_TREE [PATCHES_DIR]
#
#   PRISTINE_TREE  an unpacked, unmodified Linux 6.12.117 tree (Debian's linux-source-6.12),
#                  e.g. /tmp/ksrc/linux-source-6.12. It is only read.
#   PATCHES_DIR    the folder holding one sub-folder per patch set (default: this script's
#                  folder).
#   -v             print every command's output, not just failures.
#
# Stacks checked (a set's role comes from the `role` key of its expect.toml):
#   - every set alone;
#   - every "debug" set (an amplifier) first, then any one other set;
#   - all "debug" sets together, in each order, then any one other set.
#
# Each stack is applied twice, patch by patch, to a scratch copy of just the files the
# patches touch: once with `git apply --check` then `git apply` (default settings: exact
# context, offsets allowed), once with `patch -p1 -F0 --dry-run` then `patch -p1 -F0`
# (fuzz 0, offsets allowed). A stack fails if any step fails. Offsets are reported, not
# failed: a patch that follows another in a stack usually lands a few lines lower.
#
# Exit status: 0 if every stack applies, 1 if any does not, 2 on a usage error.
set -eu

verbose=0
if [ "${1:-}" = "-v" ]; then
	verbose=1
	shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
	sed -n '4,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
fi
tree=$1
pdir=${2:-$(dirname "$0")}
pdir=$(cd "$pdir" && pwd)

if [ ! -f "$tree/Makefile" ] || [ ! -d "$tree/kernel" ]; then
	echo "check-stacks: $tree is not a kernel tree (no Makefile or kernel/)" >&2
	exit 2
fi
version=$(sed -n 's/^VERSION = //p;s/^PATCHLEVEL = //p;s/^SUBLEVEL = //p' "$tree/Makefile" |
	paste -sd. -)
if [ "$version" != "6.12.117" ]; then
	echo "check-stacks: warning: $tree is Linux $version, the patches target 6.12.117" >&2
fi
for tool in git patch; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "check-stacks: $tool is not installed" >&2
		exit 2
	fi
done

# The patch sets: folders with a series file.
sets=
debug=
for s in "$pdir"/*/series; do
	[ -f "$s" ] || continue
	name=$(basename "$(dirname "$s")")
	sets="$sets $name"
	if grep -Eq '^role *= *"debug"' "$pdir/$name/expect.toml" 2>/dev/null; then
		debug="$debug $name"
	fi
done
if [ -z "$sets" ]; then
	echo "check-stacks: no patch sets (folders with a series file) in $pdir" >&2
	exit 2
fi

# The patch files of a set, in series order (first word of each line; # comments allowed).
series_files() {
	sed -e 's/#.*//' "$pdir/$1/series" | awk 'NF { print $1 }' | while read -r f; do
		if [ ! -f "$pdir/$1/$f" ]; then
			echo "check-stacks: $1/series lists $f, which does not exist" >&2
			exit 1
		fi
		echo "$pdir/$1/$f"
	done
}

work=$(mktemp -d "${TMPDIR:-/tmp}/check-stacks.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# Every file any patch touches (existing in the pristine tree), copied once.
mkdir "$work/base"
all_patches=
for s in $sets; do
	all_patches="$all_patches $(series_files "$s" | tr '\n' ' ')"
done
# shellcheck disable=SC2086
sed -n 's|^--- a/||p' $all_patches | sed 's/[[:space:]].*//' | sort -u | while read -r f; do
	if [ -f "$tree/$f" ]; then
		mkdir -p "$work/base/$(dirname "$f")"
		cp "$tree/$f" "$work/base/$f"
	fi
done

failed=0
checked=0

# check_stack NAME... : apply the sets in order with both tools.
check_stack() {
	label=$(echo "$*" | sed 's/ / + /g')
	checked=$((checked + 1))
	ok=1
	notes=
	for tool in git patch; do
		rm -rf "$work/t"
		cp -R "$work/base" "$work/t"
		# Its own repository, so that git apply never resolves paths against an enclosing one.
		git init -q "$work/t"
		for s in "$@"; do
			for p in $(series_files "$s"); do
				pn="$s/$(basename "$p")"
				out=
				out2=
				if [ $tool = git ]; then
					if ! out=$(cd "$work/t" && git apply --check "$p" 2>&1) ||
					   ! out2=$(cd "$work/t" && git apply "$p" 2>&1); then
						ok=0
						echo "FAIL  $label: git apply $pn:"
						printf '%s\n%s\n' "$out" "$out2" | sed '/^$/d;s/^/      /'
						continue 3
					fi
					if [ $verbose = 1 ] && [ -n "$out$out2" ]; then
						printf '%s\n%s\n' "$out" "$out2" | sed '/^$/d;s/^/      /'
					fi
				else
					if ! out=$(cd "$work/t" && patch -p1 -F0 --dry-run -s <"$p" 2>&1) ||
					   ! out2=$(cd "$work/t" && patch -p1 -F0 --no-backup-if-mismatch <"$p" 2>&1); then
						ok=0
						echo "FAIL  $label: patch -p1 -F0 $pn:"
						printf '%s\n%s\n' "$out" "$out2" | sed '/^$/d;s/^/      /'
						continue 3
					fi
					if echo "$out2" | grep -q 'fuzz'; then
						ok=0
						echo "FAIL  $label: patch applied $pn with fuzz:"
						echo "$out2" | sed 's/^/      /'
						continue 3
					fi
					if echo "$out2" | grep -q 'offset'; then
						n=$(echo "$out2" | grep -c 'offset')
						notes="$notes $(basename "$p"):$n-offset"
					fi
					if [ $verbose = 1 ]; then
						echo "$out2" | sed 's/^/      /'
					fi
				fi
			done
		done
	done
	if [ $ok = 1 ]; then
		if [ -n "$notes" ]; then
			echo "ok    $label (hunks at an offset:$notes)"
		else
			echo "ok    $label"
		fi
	else
		failed=$((failed + 1))
	fi
}

echo "check-stacks: $pdir onto $tree (Linux $version)"
echo "sets:$sets"
echo "debug (amplifier) sets:${debug:- none}"

for s in $sets; do
	check_stack "$s"
done

for d in $debug; do
	for s in $sets; do
		[ "$s" = "$d" ] && continue
		check_stack "$d" "$s"
	done
done

# All debug sets together, in every order (there are two, so both orders), then one more.
ndebug=$(echo $debug | wc -w)
if [ "$ndebug" -ge 2 ]; then
	orders="$(echo $debug)"
	orders="$orders
$(echo $debug | tr ' ' '\n' | tac | paste -sd' ' -)"
	echo "$orders" | while read -r order; do
		check_stack $order
		for s in $sets; do
			case " $order " in *" $s "*) continue ;; esac
			check_stack $order "$s"
		done
		echo "$checked $failed" >"$work/counts"
	done
	if [ -f "$work/counts" ]; then
		read -r checked failed <"$work/counts"
	fi
fi

echo "check-stacks: $checked stacks checked, $failed failed"
[ "$failed" = 0 ]
