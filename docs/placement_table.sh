#!/bin/sh
# Regenerates the strategy table of docs/placement.md: every DeepSeek-V3
# trace in traces/data/deepseek-v3-sglang at EP32 (4 nodes) and EP144 (18
# nodes) with 32 redundant experts, mean PAR per strategy and its gap to
# the lower bound, from `moesim place`.
#
#   sh docs/placement_table.sh            print the table
#   sh docs/placement_table.sh --update   rewrite it in docs/placement.md
#
# Run from the repository root after `make`. Columns: every registered
# strategy (read from `moesim place --help`, so new ones appear by
# themselves) plus EPLB forced to its global policy at EP32. MOESIM names
# another binary.
set -eu

MOESIM=${MOESIM:-build/moesim}
DOC=docs/placement.md
TRACES=traces/data/deepseek-v3-sglang

[ -x "$MOESIM" ] || { echo "placement_table: $MOESIM not found (run make first)" >&2; exit 1; }

# "placement strategy (static, eplb)" -> "static eplb"
names=$("$MOESIM" place --help | sed -n 's/.*placement strategy (\(.*\)).*/\1/p' | tr -d ',')
[ -n "$names" ] || { echo "placement_table: cannot read the strategy list" >&2; exit 1; }

# Columns: label|strategy|extra flags
cols=""
for n in $names; do cols="$cols $n|$n|"; done
case " $names " in *" eplb "*) cols="$cols eplb-global|eplb|--set=strategy.eplb.policy=global" ;; esac

# One `moesim place` run: prints "PAR bound_PAR gap%".
one() { # trace devices nodes strategy flags
    # shellcheck disable=SC2086
    "$MOESIM" place -q --counts "$1" --devices "$2" --nodes "$3" --redundant 32 \
        --strategy "$4" $5 |
        sed -n 's/^mean PAR \([0-9.]*\) .*bound PAR \([0-9.]*\), gap to bound \([0-9.]*\)%.*/\1 \2 \3/p'
}

table() {
    for ep in "32 4" "144 18"; do
        set -- $ep
        d=$1 nodes=$2
        printf '\n**EP%s (%s nodes, 32 redundant, %s slots per device)**: mean PAR over the 58 MoE layers, (gap to the bound)\n\n' \
            "$d" "$nodes" "$((288 / d))"
        printf '| trace | bound |'
        for c in $cols; do printf ' %s |' "${c%%|*}"; done
        printf '\n|---|---|'
        for c in $cols; do printf -- '---|'; done
        printf '\n'
        for f in "$TRACES"/*.json; do
            row="| $(basename "$f" .json) |"
            bound=""
            for c in $cols; do
                label=${c%%|*}
                rest=${c#*|}
                strat=${rest%%|*}
                flags=${rest#*|}
                [ "$label" = eplb-global ] && [ "$d" != 32 ] && { row="$row (= eplb) |"; continue; }
                r=$(one "$f" "$d" "$nodes" "$strat" "$flags")
                [ -n "$r" ] || { echo "placement_table: $strat failed on $f at EP$d" >&2; exit 1; }
                set -- $r
                bound=$2
                row="$row $1 (+$3%) |"
            done
            row=$(printf '%s' "$row" | sed "s/^\(| [^|]* |\)/\1 $bound |/")
            printf '%s\n' "$row"
        done
    done
}

if [ "${1:-}" = --update ]; then
    out=$(table)
    tmp="$DOC.tmp.$$"
    awk -v t="$out" '
        /<!-- placement-table:begin -->/ { print; print t; skip = 1; next }
        /<!-- placement-table:end -->/ { skip = 0 }
        !skip' "$DOC" >"$tmp" && mv "$tmp" "$DOC"
    echo "placement_table: updated $DOC"
else
    table
fi
