#!/bin/sh
# Regenerates the strategy tables of docs/placement.md: every DeepSeek-V3
# trace in traces/data/deepseek-v3-sglang at EP32 (4 nodes) and EP144 (18
# nodes) with 32 redundant experts, mean PAR per strategy and its gap to
# the lower bound, in-sample (planned and scored on the same file), then
# out-of-sample (planned on each file, scored on each other one, with
# `moesim place --counts A --eval B`).
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

# "placement strategy (static, eplb)" -> "static eplb"; strategies that
# need an input of their own (a layout file, an external program) are left
# out: they plan from no counts.
names=$("$MOESIM" place --help | sed -n 's/.*placement strategy (\(.*\)).*/\1/p' | tr -d ',' |
    tr ' ' '\n' | grep -v -e ':' -e '^layout$' | tr '\n' ' ')
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

# One out-of-sample `moesim place`: prints "in out hindsight".
pair() { # plan-on scored-on devices nodes strategy flags
    # shellcheck disable=SC2086
    "$MOESIM" place -q --counts "$1" --eval "$2" --devices "$3" --nodes "$4" --redundant 32 \
        --strategy "$5" $6 |
        sed -n 's/^mean PAR in-sample \([0-9.]*\), out-of-sample \([0-9.]*\), hindsight (planned on [^)]*) \([0-9.]*\),.*/\1 \2 \3/p'
}

# Out-of-sample: per strategy an 8 x 8 matrix (row: planned on, column:
# scored on; the diagonal is in-sample), and a summary over the 56 pairs.
crosstable() {
    files=$(ls "$TRACES"/*.json)
    for ep in "32 4" "144 18"; do
        set -- $ep
        d=$1 nodes=$2
        sumrows=""
        mats=""
        for c in $cols; do
            label=${c%%|*}
            rest=${c#*|}
            strat=${rest%%|*}
            flags=${rest#*|}
            [ "$label" = eplb-global ] && [ "$d" != 32 ] && continue
            head='| planned on \ scored on |'
            sep='|---|'
            for b in $files; do
                head="$head $(basename "$b" .json | sed 's/^prefill_/p_/; s/^decode_/d_/') |"
                sep="$sep---|"
            done
            mat="$head
$sep"
            n=0 s_in=0 s_out=0 s_h=0 worst=0
            for a in $files; do
                row="| $(basename "$a" .json) |"
                for b in $files; do
                    if [ "$a" = "$b" ]; then
                        r=$(one "$a" "$d" "$nodes" "$strat" "$flags")
                        [ -n "$r" ] || { echo "placement_table: $strat failed on $a at EP$d" >&2; exit 1; }
                        row="$row **${r%% *}** |"
                        continue
                    fi
                    r=$(pair "$a" "$b" "$d" "$nodes" "$strat" "$flags")
                    [ -n "$r" ] || { echo "placement_table: $strat failed on $a -> $b at EP$d" >&2; exit 1; }
                    set -- $r
                    row="$row $2 |"
                    n=$((n + 1))
                    s_in=$(awk "BEGIN { print $s_in + $1 }")
                    s_out=$(awk "BEGIN { print $s_out + $2 }")
                    s_h=$(awk "BEGIN { print $s_h + $3 }")
                    worst=$(awk "BEGIN { print ($2 > $worst) ? $2 : $worst }")
                done
                mat="$mat
$row"
            done
            mats="$mats

**$label, EP$d**: mean PAR over the 58 MoE layers of the layout planned on the row's file and scored on the column's (bold: in-sample)

$mat"
            sumrows="$sumrows
| $label | $(awk "BEGIN { printf \"%.4f\", $s_in / $n }") | $(awk "BEGIN { printf \"%.4f\", $s_out / $n }") | $(awk "BEGIN { printf \"%.4f\", $s_h / $n }") | $(awk "BEGIN { printf \"%.4f\", $worst }") |"
        done
        printf '\n**EP%s (%s nodes, 32 redundant), over the %s ordered pairs of different files**: mean PAR in-sample (on the file it was planned on), out-of-sample (on the other file), hindsight (the same strategy planned on the scored file: its oracle), and the worst out-of-sample pair\n\n' \
            "$d" "$nodes" "$n"
        printf '| strategy | in-sample | out-of-sample | hindsight (oracle) | worst pair |\n|---|---|---|---|---|'
        printf '%s\n' "$sumrows"
        printf '%s\n' "$mats"
    done
}

if [ "${1:-}" = --update ]; then
    out=$(table)
    cross=$(crosstable)
    tmp="$DOC.tmp.$$"
    awk -v t="$out" '
        /<!-- placement-table:begin -->/ { print; print t; skip = 1; next }
        /<!-- placement-table:end -->/ { skip = 0 }
        !skip' "$DOC" >"$tmp" && mv "$tmp" "$DOC"
    awk -v t="$cross" '
        /<!-- placement-cross:begin -->/ { print; print t; skip = 1; next }
        /<!-- placement-cross:end -->/ { skip = 0 }
        !skip' "$DOC" >"$tmp" && mv "$tmp" "$DOC"
    echo "placement_table: updated $DOC"
else
    table
    crosstable
fi
