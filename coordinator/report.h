/* report.h: the campaign report (`rsd report DIR`), computed from the journal alone.
 *
 * co_report_write opens DIR/journal.sqlite read-only (also while a coordinator writes it, or after a
 * campaign was interrupted) and writes report.json, report.md and report.html: per variant x task
 * success with 95% Wilson intervals and mean episode length; per variant overall success, decode
 * latency per action chunk (p50/p95/p99 and its queue/encode/decode split), main-model forwards per
 * chunk, draft acceptance per layer; variant vs baseline (Newcombe difference interval, Fisher exact
 * test, speedups); infrastructure (retries, abandoned episodes, workers, wall time, events); failed
 * episodes with links to their rollout videos under DIR/videos/. What every figure means and how it
 * is computed is in docs/report.md. A figure without data is null in JSON and "—" in Markdown/HTML.
 *
 * The statistics helpers are public so that tests (and benchmarks) check them against known values.
 * Nothing here writes the journal. */
#ifndef RSD_CO_REPORT_H
#define RSD_CO_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CO_REPORT_JSON "report.json" /* file names inside the output directory */
#define CO_REPORT_MD "report.md"
#define CO_REPORT_HTML "report.html"
#define CO_REPORT_VIDEOS_DIR "videos" /* DIR/videos/<variant>_t<task>_r<trial>.{png,webm,mp4} */
#define CO_REPORT_Z95 1.959963984540054 /* standard normal quantile for two-sided 95% intervals */

/* ---- errors ----------------------------------------------------------------------------------- */
#define CO_REPORT_ERRORS(E)                                  \
  E(ARG, 1, "invalid argument")                              \
  E(JOURNAL, 2, "cannot read the campaign journal")          \
  E(IO, 3, "cannot write the report")                        \
  E(NOMEM, 4, "out of memory")

typedef enum {
  CO_REPORT_OK = 0,
#define CO_REPORT_E_(name, num, text) CO_REPORT_ERR_##name = num,
  CO_REPORT_ERRORS(CO_REPORT_E_)
#undef CO_REPORT_E_
} co_report_err_t;

/* Static text for an error code ("unknown error code" for others). */
const char *co_report_strerror(co_report_err_t code);

/* The outcome of a failing call: a code and a message naming the file or journal and the value. */
typedef struct {
  co_report_err_t code;
  char text[1024];
} co_report_error_t;

/* ---- statistics ------------------------------------------------------------------------------- */

/* Wilson score interval for k successes in n trials at normal quantile z (CO_REPORT_Z95 for 95%).
 * Returns false (and leaves *lo, *hi alone) when n == 0 or k > n: no interval without data. */
bool co_report_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);

/* Newcombe's hybrid score interval (his method 10) for the difference p1 - p2 of two independent
 * proportions k1/n1 and k2/n2, from their Wilson intervals. *diff receives p1 - p2. Returns false when
 * n1 or n2 is 0 (or k > n). */
bool co_report_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z, double *diff, double *lo,
                        double *hi);

/* Two-sided Fisher exact test p for the 2x2 table [[a, b], [c, d]]: the sum of the hypergeometric
 * probabilities (margins fixed, computed with lgamma) of every table no more likely than the observed
 * one (relative tolerance 1e-7). 1.0 for a table with an empty margin. */
double co_report_fisher_p(uint64_t a, uint64_t b, uint64_t c, uint64_t d);

/* The q-quantile (0 <= q <= 1) of n ascending values by linear interpolation between the closest ranks
 * (position q * (n - 1), numpy's default). NAN when n == 0. */
double co_report_quantile(const double *sorted, size_t n, double q);

/* ---- the report ------------------------------------------------------------------------------- */

/* What a written report covered, for a caller's one-line summary. */
typedef struct {
  uint64_t episodes;  /* in the journal */
  uint64_t done;      /* with a result */
  uint64_t abandoned; /* given up after max_attempts infrastructure failures */
  uint32_t variants;
  uint32_t tasks;
  bool complete; /* there are episodes, and every one is done or abandoned */
} co_report_summary_t;

/* Reads `dir`/journal.sqlite (read-only) and writes report.json, report.md and report.html into
 * `out_dir` (nullable: `dir`), each through a temporary file renamed into place, so a reader never sees
 * half a report. Video links point into `dir`/videos/ (relative when out_dir is dir). `summary`
 * (nullable) receives what the report covered. Strings borrowed. */
co_report_err_t co_report_write(const char *dir, const char *out_dir, co_report_summary_t *summary,
                                co_report_error_t *err);

/* `rsd report DIR [--out OUT_DIR]`: argv[0] is DIR (argv holds only what follows "report"). Writes the
 * report, prints the three paths and a summary line to stdout, errors to stderr. Returns the process
 * exit status: 0 written, 1 error (no journal, unreadable, cannot write), 2 usage. */
int co_report_cli(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
