/* expert_bench.c: the expert's benchmark over LIBERO-Spatial (docs/benchmarks.md), and a stand-alone way to
 * run the `expert` and `collect` subcommands before rsd-sim-worker dispatches them:
 *
 *   expert_bench [expert] --suite libero_spatial --tasks all --trials 0-49 [--json FILE]
 *   expert_bench collect --suite libero_spatial --tasks 0 --trials 0-49 [--size 128] -o demos.hdf5
 *
 * Not a ctest: the 500 episodes take several minutes on one core. */
#include <stdio.h>
#include <string.h>

#include "expert.h"

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "collect")) return sw_collect_cli(argc - 1, argv + 1);
  if (argc > 1 && !strcmp(argv[1], "expert")) return sw_expert_cli(argc - 1, argv + 1);
  argv[0] = "expert";
  return sw_expert_cli(argc, argv);
}
