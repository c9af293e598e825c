/* place_bound: a lower bound on the maximum device load of a layer that any
 * placement with the same slot budget could reach. */
#include <stdlib.h>

#include "place.h"
#include "util.h"

double place_bound(const double *w, int E, int D, int n_slots) {
    double total = 0;
    for (int e = 0; e < E; e++) total += w[e];
    double best_ep = total / D;
    /* Some replica of expert e carries at least w[e] / r[e], and r[e] can be
     * at most D (more copies on one device do not split its load further).
     * Handing the extra slots greedily to the largest w/r minimises the
     * largest w/r over all allocations, so that maximum is a valid bound. */
    int *r = ms_malloc((size_t)E * sizeof *r);
    for (int e = 0; e < E; e++) r[e] = 1;
    for (int extra = n_slots - E; extra > 0; extra--) {
        int arg = -1;
        for (int e = 0; e < E; e++)
            if (r[e] < D && (arg < 0 || w[e] * r[arg] > w[arg] * r[e])) arg = e;
        if (arg < 0) break;
        r[arg]++;
    }
    double m = 0;
    for (int e = 0; e < E; e++) m = ms_dmax(m, w[e] / r[e]);
    free(r);
    return ms_dmax(best_ep, m);
}
