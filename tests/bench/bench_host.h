/* bench_host.h: what the benchmark programs print about the machine they ran on. */
#ifndef RSD_BENCH_HOST_H
#define RSD_BENCH_HOST_H

#include <stdio.h>
#include <string.h>

/* The CPU's "model name" from /proc/cpuinfo into out, or "unknown". */
static inline void bench_cpu_model(char *out, size_t cap) {
  snprintf(out, cap, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0) continue;
    char *p = strchr(line, ':');
    if (!p) continue;
    p++;
    while (*p == ' ' || *p == '\t') p++;
    p[strcspn(p, "\n")] = '\0';
    snprintf(out, cap, "%s", p);
    break;
  }
  fclose(f);
}

#endif
