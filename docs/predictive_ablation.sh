#!/bin/sh
# Measures which of predictive's ideas carry its out-of-sample gain on the
# DeepSeek-V3 traces (docs/strategies.md, "predictive"): every variant
# planned on each of the 8 files and scored on each other one (`moesim place
# --counts A --eval B`, 56 ordered pairs) at EP32 (4 nodes) and EP144 (18
# nodes) with 32 redundant slots; prints the mean out-of-sample PAR per
# variant beside EPLB's and OmniPlacement's.
#
#   sh docs/predictive_ablation.sh         the ablation table
#   sh docs/predictive_ablation.sh --cv    also the leave-one-out check of the
#                                          defaults: for each scored pair (A, B)
#                                          the grid point best on the pairs
#                                          that involve neither A nor B, scored
#                                          on (A, B)
#
# Run from the repository root after `make`. MOESIM names another binary.
set -eu

MOESIM=${MOESIM:-build/moesim}
TRACES=traces/data/deepseek-v3-sglang
[ -x "$MOESIM" ] || { echo "predictive_ablation: $MOESIM not found (run make first)" >&2; exit 1; }

# One variant: prints "D i j PAR" for every ordered pair at both EP sizes.
# flags is split into words on purpose (no value holds a space).
pairs() { # strategy "flags"
    for ep in "32 4" "144 18"; do
        d=${ep% *} nodes=${ep#* }
        i=0
        for a in "$TRACES"/*.json; do
            j=0
            for b in "$TRACES"/*.json; do
                if [ "$a" != "$b" ]; then
                    # shellcheck disable=SC2086
                    r=$("$MOESIM" place -q --counts "$a" --eval "$b" --devices "$d" \
                        --nodes "$nodes" --redundant 32 --strategy "$1" $2 |
                        sed -n 's/^mean PAR in-sample [0-9.]*, out-of-sample \([0-9.]*\),.*/\1/p')
                    [ -n "$r" ] || { echo "predictive_ablation: $1 $2 failed on $a -> $b" >&2; exit 1; }
                    echo "$d $i $j $r"
                fi
                j=$((j + 1))
            done
            i=$((i + 1))
        done
    done
}

mean() { # file D
    awk -v d="$2" '$1 == d { s += $4; n++ } END { printf "%.4f", s / n }' "$1"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

P=strategy.predictive
row() { # label strategy "flags"
    pairs "$2" "${3:-}" >"$tmp/v"
    printf '| %s | %s | %s |\n' "$1" "$(mean "$tmp/v" 32)" "$(mean "$tmp/v" 144)"
}

printf '| variant | EP32 | EP144 |\n|---|---|---|\n'
row "eplb (reference)" eplb
row "omni (reference)" omni
row "predictive, defaults" predictive
row "predictive, all ideas off" predictive "--set $P.shrink=0 --set $P.prior_tokens=0 --set $P.risk=0 --set $P.group_corr=0"
row "predictive, shrink only" predictive "--set $P.risk=0 --set $P.group_corr=0"
row "predictive, without shrink" predictive "--set $P.shrink=0"
row "predictive, without risk (sd term)" predictive "--set $P.risk=0"
row "predictive, without group_corr" predictive "--set $P.group_corr=0"
row "predictive, defaults + moves=20" predictive "--set $P.moves=20"

[ "${1:-}" = --cv ] || exit 0

# Leave-one-out over a small grid of the three tuned parameters.
k=0
for sh in 0.05 0.15 0.25; do
    for rk in 0.5 1 1.5; do
        for gc in 0.5 1; do
            pairs predictive "--set $P.shrink=$sh --set $P.risk=$rk --set $P.group_corr=$gc" \
                >"$tmp/one"
            sed "s/^/$k /" "$tmp/one" >>"$tmp/grid"
            echo "$k shrink=$sh risk=$rk group_corr=$gc" >>"$tmp/names"
            k=$((k + 1))
        done
    done
done
awk 'NR == FNR { name[$1] = $2 " " $3 " " $4; next }
     { v[$1, $2, $3, $4] = $5; g[$1] = 1; d[$2] = 1 }
     END {
       for (D in d) {
         s = 0; n = 0
         for (i = 0; i < 8; i++) for (j = 0; j < 8; j++) {
           if (i == j) continue
           best = -1
           for (c in g) {  # mean over pairs involving neither i nor j, both EP sizes
             t = 0; m = 0
             for (DD in d) for (a = 0; a < 8; a++) for (b = 0; b < 8; b++)
               if (a != b && a != i && a != j && b != i && b != j) { t += v[c, DD, a, b]; m++ }
             if (best < 0 || t / m < bt || (t / m == bt && c + 0 < best + 0)) { best = c; bt = t / m }
           }
           s += v[best, D, i, j]; n++; pick[name[best]]++
         }
         printf "leave-one-out mean out-of-sample PAR at EP%s: %.4f\n", D, s / n
       }
       for (p in pick) printf "  chosen %d times: %s\n", pick[p], p
     }' "$tmp/names" "$tmp/grid" | sort
