/* serve_out: the serving run's rows, handed to the run recorder
 * (record.h): per request, per layer, locality, the metrics and the
 * strategy's own (weight copies go through replan_record_copies as they
 * happen). Nothing here computes a
 * metric (serve_metrics.c does). */
#include "serve_int.h"

#include <stdlib.h>

#include "util.h"

int serve_record_results(srv_t *s, metrics_t *m, int64_t end) {
    const inst_t *pr = s->has_dc ? &s->dc : &s->pf;
    size_t nr = s->released > 0 ? (size_t)s->released : 1;
    store_request_t *rows = ms_malloc(nr * sizeof *rows);
    for (int64_t i = 0; i < s->released; i++) {
        const sreq_t *q = &s->r[i];
        rows[i] = (store_request_t){.request = i, .arrival_ns = q->arrival_ns,
                                    .first_token_ns = q->first_ns, .done_ns = q->done_ns,
                                    .prompt_tokens = q->prompt, .output_tokens = q->output};
    }
    metrics_layer_bound_t *lb = NULL;
    serve_metrics(s, rows, end, m, &lb);
    int rc = record_requests(s->rec, rows, s->released);
    free(rows);
    if (!rc) rc = record_layers(s->rec, pr->mg->live, pr->tr_tot, &pr->loads, lb);
    free(lb);
    if (rc) return MS_ERR;
    if (loc_store(pr->loc, s->rec, m) || record_metrics(s->rec, m)) return MS_ERR;
    for (int k = 0; k < 2; k++) {
        const inst_t *in = k ? &s->pf : &s->dc;
        if ((k ? s->has_pf : s->has_dc) &&
            record_strategy_metrics(s->rec, s->ops, in->ps, in == pr ? "" : "prefill_"))
            return MS_ERR;
    }
    return MS_OK;
}

