/* proc.h: the child processes of a multi-process test (rsd, sim workers, harnesses): start them, wait for
 * them with a timeout, and kill every one still running when the test exits (register proc_kill_all with
 * atexit). Children also die with the test (PR_SET_PDEATHSIG), so a crashed test leaves no orphans.
 * Header-only, like check.h: each test program includes it once. */
#ifndef RSD_TESTS_PROC_H
#define RSD_TESTS_PROC_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t proc_pids_[32]; /* started and not yet reaped; -1: reaped */
static int proc_npids_;

/* Kills (SIGKILL) and reaps every child still running. */
static inline void proc_kill_all(void) {
  for (int i = 0; i < proc_npids_; i++)
    if (proc_pids_[i] > 0) {
      kill(proc_pids_[i], SIGKILL);
      waitpid(proc_pids_[i], NULL, 0);
      proc_pids_[i] = -1;
    }
}

/* Starts argv[0] (argv NULL-terminated) with stderr appended to errpath and stdout written to outpath
 * (both nullable: inherited); `env` (nullable) is one NAME=VALUE added to the child's environment.
 * Returns the pid, or -1 when fork fails. */
static inline pid_t proc_spawn(char *const argv[], const char *errpath, const char *outpath, const char *env) {
  pid_t parent = getpid(), pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(125);
    if (errpath && !freopen(errpath, "a", stderr)) _exit(126);
    if (outpath && !freopen(outpath, "w", stdout)) _exit(126);
    if (env) putenv((char *)env);
    execv(argv[0], argv);
    _exit(127);
  }
  if (pid > 0 && proc_npids_ < (int)(sizeof proc_pids_ / sizeof proc_pids_[0])) proc_pids_[proc_npids_++] = pid;
  return pid;
}

/* Waits up to timeout_s seconds for pid (0: only looks); returns its exit status (128 + signal when
 * killed), or -1 when it is still running. */
static inline int proc_wait(pid_t pid, int timeout_s) {
  int status;
  for (int i = 0;; i++) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      for (int k = 0; k < proc_npids_; k++)
        if (proc_pids_[k] == pid) proc_pids_[k] = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (i >= timeout_s * 100) return -1;
    usleep(10000);
  }
}

#endif
