/* main.c -- docketd: settings, process setup, privilege drop, the loop.
 *
 * Order matters: bind while still privileged (a port below 1024, a socket in
 * /run), then become -u USER, then open and replay the write-ahead log (its
 * files belong to that user), then serve. Exit status: 0 after SIGTERM or
 * SIGINT, 1 when the server cannot start, 2 for a usage error.
 */
#include <errno.h>
#include <event2/event.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../common/log.h"
#include "config.h"
#include "server.h"

/* Raises the soft limit on open files to the hard limit: each client is one
 * descriptor, and thousands of clients are normal. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == rl.rlim_max)
        return;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        dk_log(DK_LOG_WARN, "cannot raise the open-file limit: %s", strerror(errno));
    else
        dk_log(DK_LOG_INFO, "open-file limit %llu", (unsigned long long)rl.rlim_cur);
}

/* A client that disconnects while we write must give EPIPE, not kill us. */
static void ignore_sigpipe(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

/* Becomes user and its group (supplementary groups too when we are root).
 * Returns 0, or -1 after logging why. */
static int become(const char *user)
{
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        dk_log(DK_LOG_ERROR, "getpwnam(\"%s\"): %s", user,
               errno ? strerror(errno) : "no such user");
        return -1;
    }
    if (geteuid() == 0 && initgroups(pw->pw_name, pw->pw_gid) < 0) {
        dk_log(DK_LOG_ERROR, "initgroups(\"%s\"): %s", user, strerror(errno));
        return -1;
    }
    if (setgid(pw->pw_gid) < 0) {
        dk_log(DK_LOG_ERROR, "setgid(%d \"%s\"): %s", (int)pw->pw_gid, user, strerror(errno));
        return -1;
    }
    if (setuid(pw->pw_uid) < 0) {
        dk_log(DK_LOG_ERROR, "setuid(%d \"%s\"): %s", (int)pw->pw_uid, user, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct server srv;
    int rc = 1;

    config_load(&cfg, argc, argv);
    dk_log_threshold = DK_LOG_NOTICE + (int)(cfg.verbose > 2 ? 2 : cfg.verbose);
    ignore_sigpipe();
    raise_nofile();

    if (server_init(&srv, &cfg) == 0 && (!cfg.user || become(cfg.user) == 0) &&
        server_open_log(&srv) == 0)
        rc = server_run(&srv) < 0 ? 1 : 0;
    server_destroy(&srv);
    config_destroy(&cfg);
    libevent_global_shutdown();
    return rc;
}
