#!/usr/bin/env bash
# wanmux lossy-link lab: two network namespaces joined by an emulated WAN link.
#
#   wmx-branch                    linkem (root namespace)             wmx-datacenter
#  +---------------------+     +----------------------------+     +---------------------+
#  | wm0 (TUN)           |     |  a2b: delay jitter loss    |     | wm0 (TUN)           |
#  | 198.18.0.1          |====>|  rate limit reorder dup    |====>| 198.18.0.2          |
#  |  peer 198.18.0.2/32 |<====|  b2a: ...    blackouts     |<====|  peer 198.18.0.1/32 |
#  +---------------------+     +----------------------------+     +---------------------+
#
# Where the kernel has sch_netem (probed once, in a throwaway namespace), the
# middle is a veth pair instead (wm0 <-> wm0, 198.18.0.1/30 - 198.18.0.2/30)
# with `tc qdisc ... netem` on each side's egress; a2b is branch's egress.
#
# Usage: lab.sh up SCENARIO [KEY=VALUE | a2b:KEY=VALUE | b2a:KEY=VALUE |
#                            blackout=AT:DURATION | seed=N]...
#        lab.sh down | status | scenarios
#        lab.sh exec branch|datacenter CMD...
#        lab.sh link down|up|toggle|blackout SECONDS|stats
# Environment: WMX_LAB_PREFIX (namespace prefix, default "wmx-"),
#   WMX_LAB_RUN (state directory, default /run/wmx-lab), WMX_LAB_BACKEND
#   (auto|linkem|netem), WMX_LINKEM (linkem binary), WMX_LAB_RT (1: linkem --rt).
# Hosts only ever use 198.18.0.0/15 (the benchmarking range).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=${WMX_LAB_PREFIX:-wmx-}
NS_A=${PREFIX}branch
NS_B=${PREFIX}datacenter
DEV=wm0
ADDR_A=198.18.0.1
ADDR_B=198.18.0.2
RUN=${WMX_LAB_RUN:-/run/wmx-lab}
BACKEND=${WMX_LAB_BACKEND:-auto}
RT=${WMX_LAB_RT:-1}

die() {
	echo "lab.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '/^# Usage:/,/^# Hosts only/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

need_root() {
	[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN devices, tc): run it with sudo"
}

ns_exists() {
	ip netns list | awk '{print $1}' | grep -qx -- "$1"
}

# The linkem binary: $WMX_LINKEM, a CMake build, or compiled here on demand.
find_linkem() {
	local c
	for c in "${WMX_LINKEM:-}" "$HERE/../build/netem/linkem" "$HERE/linkem"; do
		if [ -n "$c" ] && [ -x "$c" ]; then
			echo "$c"
			return
		fi
	done
	mkdir -p "$RUN"
	if [ ! -x "$RUN/linkem" ] || [ "$HERE/linkem.c" -nt "$RUN/linkem" ] ||
		[ "$HERE/linkem_model.c" -nt "$RUN/linkem" ]; then
		"${CC:-cc}" -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -o "$RUN/linkem" \
			"$HERE/linkem.c" "$HERE/linkem_model.c" >&2 ||
			die "cannot build linkem; set WMX_LINKEM to a built binary"
	fi
	echo "$RUN/linkem"
}

# Succeeds if `tc qdisc add ... netem` works here; tries it in a throwaway namespace.
probe_netem() {
	local ns=${PREFIX}probe-$$ ok=1
	ip netns add "$ns" 2>/dev/null || return 1
	if ip -n "$ns" link add probe0 type dummy 2>/dev/null &&
		ip -n "$ns" link set probe0 up 2>/dev/null &&
		tc -n "$ns" qdisc add dev probe0 root netem delay 1ms 2>/dev/null; then
		ok=0
	fi
	ip netns del "$ns" 2>/dev/null || true
	return $ok
}

# Translates a linkem spec to `tc netem` arguments (same semantics, netem syntax).
spec_to_netem() {
	local spec=$1 item key val delay="" jitter="" dist="" out=() ge=()
	[ "$spec" = none ] && spec=""
	local IFS=,
	for item in $spec; do
		key=${item%%=*}
		val=${item#*=}
		case $key in
		delay) delay=$val ;;
		jitter) jitter=$val ;;
		dist) [ "$val" = normal ] && dist="distribution normal" ;;
		loss) out+=(loss random "$val") ;;
		gemodel) read -r -a ge <<<"${val//\// }" && out+=(loss gemodel "${ge[@]}") ;;
		rate) out+=(rate "$val") ;;
		limit) out+=(limit "$val") ;;
		reorder) out+=(reorder "$val") ;;
		duplicate) out+=(duplicate "$val") ;;
		*) die "$key= is not supported by the tc netem backend (use WMX_LAB_BACKEND=linkem)" ;;
		esac
	done
	unset IFS
	if [ -n "$delay" ]; then
		# shellcheck disable=SC2206
		out=(delay "$delay" ${jitter:+"$jitter"} $dist "${out[@]}")
	fi
	echo "${out[@]}"
}

# Per-route congestion control (not locked: a socket may still choose its own
# with TCP_CONGESTION). $1: the connected route in branch, $2: in datacenter.
set_cubic_routes() {
	ip -n "$NS_A" route replace "$1" dev "$DEV" proto kernel scope link src "$ADDR_A" \
		congctl cubic
	ip -n "$NS_B" route replace "$2" dev "$DEV" proto kernel scope link src "$ADDR_B" \
		congctl cubic
}

cmd_scenarios() {
	local f
	for f in "$HERE"/scenarios/*.conf; do
		(
			# shellcheck disable=SC1090
			. "$f"
			printf '%-16s %s\n' "$(basename "$f" .conf)" "$DESCRIPTION"
		)
	done
}

# Removes everything `up` may have created; safe to run at any point.
teardown() {
	local pid
	if [ -f "$RUN/linkem.pid" ]; then
		pid=$(cat "$RUN/linkem.pid")
		if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = linkem ]; then
			kill -TERM "$pid"
			for _ in $(seq 50); do
				[ -d "/proc/$pid" ] || break
				sleep 0.1
			done
			[ -d "/proc/$pid" ] && kill -KILL "$pid"
		fi
		rm -f "$RUN/linkem.pid"
	fi
	if [ -f "$RUN/linkem.log" ]; then
		grep -E '^linkem: (a2b|b2a) up=' "$RUN/linkem.log" | tail -2 >&2 || true
	fi
	for ns in "$NS_A" "$NS_B"; do
		if ns_exists "$ns"; then
			ip netns del "$ns"
		fi
	done
	rm -f "$RUN/control" "$RUN/state" "$RUN/linkem.log" "$RUN/linkem"
	rmdir "$RUN" 2>/dev/null || true
}

cmd_up() {
	local scenario=${1:-} a2b b2a arg linkem_args=() backend pid
	[ -n "$scenario" ] || die "up needs a scenario: $(cmd_scenarios | awk '{print $1}' | tr '\n' ' ')"
	shift
	[ -f "$HERE/scenarios/$scenario.conf" ] ||
		die "unknown scenario '$scenario' (see: lab.sh scenarios)"
	if ns_exists "$NS_A" || ns_exists "$NS_B" || [ -f "$RUN/state" ]; then
		die "the lab is already up (lab.sh status; lab.sh down first)"
	fi
	# shellcheck disable=SC1090
	. "$HERE/scenarios/$scenario.conf"
	a2b=$A2B
	b2a=$B2A
	for arg in "$@"; do
		case $arg in
		a2b:*=*) a2b="${a2b#none},${arg#a2b:}" ;;
		b2a:*=*) b2a="${b2a#none},${arg#b2a:}" ;;
		blackout=*) linkem_args+=(--blackout "${arg#blackout=}") ;;
		seed=*) linkem_args+=(--seed "${arg#seed=}") ;;
		*=*)
			a2b="${a2b#none},$arg"
			b2a="${b2a#none},$arg"
			;;
		*) die "bad override '$arg' (KEY=VALUE, a2b:KEY=VALUE, b2a:KEY=VALUE)" ;;
		esac
	done
	a2b=${a2b#,}
	b2a=${b2a#,}

	backend=$BACKEND
	if [ "$backend" = auto ]; then
		if probe_netem; then backend=netem; else backend=linkem; fi
	fi
	mkdir -p "$RUN"
	local linkem
	if [ "$backend" = linkem ]; then
		linkem=$(find_linkem)
		# Validate before creating anything, so a typo leaves no debris.
		"$linkem" --check --dev-a x --dev-b y --a2b "$a2b" --b2a "$b2a" \
			${linkem_args[@]+"${linkem_args[@]}"} >/dev/null ||
			exit 2
	else
		[ ${#linkem_args[@]} -eq 0 ] || die "blackout=/seed= need the linkem backend"
		spec_to_netem "$a2b" >/dev/null
		spec_to_netem "$b2a" >/dev/null
	fi

	trap 'echo "lab.sh: up failed, tearing down" >&2; teardown' ERR
	ip netns add "$NS_A"
	ip netns add "$NS_B"
	for ns in "$NS_A" "$NS_B"; do
		ip -n "$ns" link set lo up
		# Namespaces inherit this host's BBR default; the direct-path baselines
		# must use CUBIC, like most distributions ship. A namespace may only pick
		# what the host's tcp_allowed_congestion_control lists, so this can fail;
		# set_cubic_routes below covers that case without touching the host.
		ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_congestion_control=cubic \
			2>/dev/null || true
		# IPv4 only: keeps router solicitations and MLD out of the counters.
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.default.disable_ipv6=1
	done

	if [ "$backend" = netem ]; then
		ip link add name "$DEV" netns "$NS_A" type veth peer name "$DEV" netns "$NS_B"
		ip -n "$NS_A" addr add "$ADDR_A/30" dev "$DEV"
		ip -n "$NS_B" addr add "$ADDR_B/30" dev "$DEV"
		ip -n "$NS_A" link set "$DEV" up
		ip -n "$NS_B" link set "$DEV" up
		# shellcheck disable=SC2046
		tc -n "$NS_A" qdisc add dev "$DEV" root netem $(spec_to_netem "$a2b")
		# shellcheck disable=SC2046
		tc -n "$NS_B" qdisc add dev "$DEV" root netem $(spec_to_netem "$b2a")
		set_cubic_routes 198.18.0.0/30 198.18.0.0/30
	else
		# Persistent TUN devices, addressed before linkem attaches to them.
		ip -n "$NS_A" tuntap add dev "$DEV" mode tun
		ip -n "$NS_B" tuntap add dev "$DEV" mode tun
		ip -n "$NS_A" addr add "$ADDR_A" peer "$ADDR_B/32" dev "$DEV"
		ip -n "$NS_B" addr add "$ADDR_B" peer "$ADDR_A/32" dev "$DEV"
		ip -n "$NS_A" link set "$DEV" up
		ip -n "$NS_B" link set "$DEV" up
		set_cubic_routes "$ADDR_B/32" "$ADDR_A/32"
		[ "$RT" = 1 ] && linkem_args+=(--rt)
		setsid "$linkem" --ns-a "$NS_A" --dev-a "$DEV" --ns-b "$NS_B" --dev-b "$DEV" \
			--a2b "$a2b" --b2a "$b2a" --control "$RUN/control" \
			--pidfile "$RUN/linkem.pid" ${linkem_args[@]+"${linkem_args[@]}"} \
			</dev/null >>"$RUN/linkem.log" 2>&1 &
		pid=$!
		for _ in $(seq 50); do
			[ -f "$RUN/linkem.pid" ] && break
			[ -d "/proc/$pid" ] || break
			sleep 0.1
		done
		if [ ! -f "$RUN/linkem.pid" ]; then
			cat "$RUN/linkem.log" >&2
			false
		fi
	fi
	trap - ERR
	{
		echo "scenario=$scenario"
		echo "backend=$backend"
		echo "a2b=$a2b"
		echo "b2a=$b2a"
	} >"$RUN/state"
	echo "lab up: $scenario ($DESCRIPTION) via $backend"
	echo "  a2b ($NS_A -> $NS_B): $a2b"
	echo "  b2a ($NS_B -> $NS_A): $b2a"
	echo "  try: $0 exec branch ping $ADDR_B"
}

cmd_status() {
	local pid
	if [ ! -f "$RUN/state" ]; then
		echo "lab is down"
		return 0
	fi
	cat "$RUN/state"
	if grep -q '^backend=linkem' "$RUN/state"; then
		pid=$(cat "$RUN/linkem.pid" 2>/dev/null || true)
		if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
			echo "linkem pid=$pid"
			kill -USR2 "$pid"
			sleep 0.2
			grep -E '^linkem: (a2b|b2a) up=' "$RUN/linkem.log" | tail -2
			grep -E '^linkem: link ' "$RUN/linkem.log" | tail -1 || true
		else
			echo "linkem is NOT running (see $RUN/linkem.log)"
		fi
	else
		tc -n "$NS_A" -s qdisc show dev "$DEV"
		tc -n "$NS_B" -s qdisc show dev "$DEV"
	fi
	ip -n "$NS_A" -br addr show dev "$DEV"
	ip -n "$NS_B" -br addr show dev "$DEV"
}

cmd_link() {
	local backend what=${1:-}
	[ -f "$RUN/state" ] || die "the lab is down"
	backend=$(sed -n 's/^backend=//p' "$RUN/state")
	case $what in
	down | up | toggle | stats) ;;
	blackout) [[ ${2:-} =~ ^[0-9]+(\.[0-9]+)?(s|ms)?$ ]] || die "link blackout SECONDS" ;;
	*) die "link down|up|toggle|blackout SECONDS|stats" ;;
	esac
	if [ "$backend" = linkem ]; then
		echo "$*" >"$RUN/control"
		sleep 0.1
		tail -3 "$RUN/linkem.log"
	else
		# netem: 100% loss on both egresses stands in for a dead link.
		case $what in
		down) for n in "$NS_A" "$NS_B"; do tc -n "$n" qdisc change dev "$DEV" root netem loss 100%; done ;;
		up)
			# shellcheck disable=SC2046 # netem arguments are words
			tc -n "$NS_A" qdisc change dev "$DEV" root netem $(spec_to_netem "$(sed -n 's/^a2b=//p' "$RUN/state")")
			# shellcheck disable=SC2046
			tc -n "$NS_B" qdisc change dev "$DEV" root netem $(spec_to_netem "$(sed -n 's/^b2a=//p' "$RUN/state")")
			;;
		*) die "with the netem backend only 'link down' and 'link up' work" ;;
		esac
	fi
}

cmd_exec() {
	local who=${1:-}
	[ $# -ge 2 ] || die "exec branch|datacenter CMD..."
	shift
	case $who in
	branch) ip netns exec "$NS_A" "$@" ;;
	datacenter) ip netns exec "$NS_B" "$@" ;;
	*) die "exec: host is branch or datacenter, not '$who'" ;;
	esac
}

case ${1:-} in
up)
	need_root
	shift
	cmd_up "$@"
	;;
down)
	need_root
	teardown
	echo "lab down"
	;;
status)
	need_root
	cmd_status
	;;
exec)
	need_root
	shift
	cmd_exec "$@"
	;;
link)
	need_root
	shift
	cmd_link "$@"
	;;
scenarios) cmd_scenarios ;;
-h | --help | help) usage ;;
*) usage ;;
esac
