/*
 * Process harness for the integration tests.  It starts the programs of
 * the build (pipnode, pipcall) from PIP_BIN_DIR as child processes that
 * listen on loopback only, keeps their output in a temporary folder, and
 * stops every child it started, also when a test failed half-way.
 *
 * Only harness_call_ok asserts.  Every other function returns a status
 * that the test checks, so a cmocka teardown can still clean up after a
 * failed check.
 * A harness is used from the thread that created it.
 */
#ifndef PIP_TEST_HARNESS_H
#define PIP_TEST_HARNESS_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pip/client.h"

#define HARNESS_MAX_PROCS 32
#define HARNESS_URL_MAX 64
#define HARNESS_NAME_MAX 32

/* How long a stopped child may take to exit before it gets SIGKILL. */
#define HARNESS_STOP_TIMEOUT_MS 10000

typedef struct harness_proc {
    char name[HARNESS_NAME_MAX];
    pid_t pid;
    bool running;        /* false once reaped */
    bool killed;         /* stopped with SIGKILL by the test on purpose */
    bool is_node;        /* a pipnode: must exit 0 on SIGTERM */
    bool stop_last;      /* discovery: stopped after the other children */
    bool log_printed;    /* the log was already printed once */
    int exit_code;       /* exit status, or 128 + signal number */
    char log_path[PATH_MAX];  /* stderr, and stdout unless out_path */
    char out_path[PATH_MAX];  /* stdout when kept apart, else "" */
} harness_proc;

typedef struct harness {
    char *dir;           /* mkdtemp folder, removed by harness_free */
    harness_proc procs[HARNESS_MAX_PROCS];
    int proc_count;
    int file_serial;     /* makes log and output file names unique */
    int sanitizer_reports; /* reports seen in the output of pipcall runs */
    int discovery_port;
    int discovery_pub_port;
    char discovery_url[HARNESS_URL_MAX];
    harness_proc *discovery;
    pip_client *discovery_client;
} harness;

/* The outcome of one program run to its end. */
typedef struct harness_output {
    int exit_code;  /* exit status, 128 + signal, or -1 on timeout */
    char *out;      /* stdout, NUL-terminated, never NULL after a run */
    char *err;      /* stderr, likewise */
} harness_output;

/*
 * Creates a harness with a fresh temporary folder.  Removes the PIP_*
 * variables from the environment first, so that children see only the
 * flags a test gives them.  Returns NULL on failure (printed on stderr).
 */
harness *harness_new(void);

/*
 * Stops every child still running (SIGTERM, then SIGKILL after
 * HARNESS_STOP_TIMEOUT_MS), the discovery node after the others so that
 * the nodes can deregister.  Frees the discovery client, prints the log of
 * any child that failed, and removes the temporary folder.  Returns 0
 * when every pipnode stopped here exited 0 and no child output contains
 * a sanitizer report, else -1, so a cmocka teardown can return it.
 */
int harness_free(harness *h);

/*
 * Fixture structs whose first member is a `harness *`.  harness_fixture_new
 * allocates size zeroed bytes and stores a new harness in that member, or
 * returns NULL on failure.  harness_fixture_free frees the harness with
 * harness_free, then the fixture, and returns what harness_free returned.
 * harness_teardown is the cmocka teardown that frees *state, which may be
 * NULL.
 */
void *harness_fixture_new(size_t size);
int harness_fixture_free(void *fixture);
int harness_teardown(void **state);

/*
 * Writes "<h->dir>/<name>" into out[PATH_MAX].  Returns false when the
 * path does not fit.
 */
bool harness_path(const harness *h, const char *name, char *out);

/*
 * Starts PIP_BIN_DIR/<argv[0]> with the NULL-ended argv.  stderr goes to a
 * log file named after name.  stdout goes there too, unless split_stdout
 * sends it to a file of its own (proc->out_path).  The child gets SIGKILL if
 * the test process dies.  Returns NULL when fork or the table fails.
 */
harness_proc *harness_start(harness *h, const char *name,
                            const char *const *argv, bool split_stdout);

/*
 * Waits up to timeout_ms for the child to exit and reaps it.  Returns
 * true when it exited (proc->exit_code is set), false on timeout.
 */
bool harness_wait_exit(harness_proc *proc, int timeout_ms);

/*
 * Sends SIGTERM and waits up to timeout_ms.  A child still running then
 * gets SIGKILL and its log is printed.  Returns the exit code, or -1 when
 * SIGKILL was needed.
 */
int harness_stop(harness_proc *proc, int timeout_ms);

/*
 * Sends SIGTERM to several children at once, then waits for each, as a
 * launcher stopping everything does.  Returns true when each exited
 * within timeout_ms, and codes[i] receives the exit code of procs[i], or -1.
 */
bool harness_stop_together(harness_proc **procs, int count, int timeout_ms,
                           int *codes);

/* Kills the child with SIGKILL and reaps it (kill -9 on purpose). */
void harness_kill(harness_proc *proc);

/*
 * Runs PIP_BIN_DIR/<argv[0]> to its end, at most timeout_ms (then the
 * child is killed and exit_code is -1), capturing stdout and stderr.
 * A sanitizer report on stderr is printed and counted in the harness.
 * Returns 0, or -1 when the program could not be started.
 */
int harness_run(harness *h, const char *const *argv, int timeout_ms,
                harness_output *out);
void harness_output_fini(harness_output *out);

/*
 * Runs `pipcall --discovery <discovery> --timeout 5000 ARGS...` with the
 * NULL-ended args, at most 15 s.  HARNESS_PIPCALL builds the array.
 */
int harness_pipcall(harness *h, harness_output *out,
                    const char *const *args);
#define HARNESS_PIPCALL(h, out, ...) \
    harness_pipcall((h), (out), (const char *const[]){__VA_ARGS__, NULL})

/*
 * Parses text as one JSON value (any type, so "null" is accepted).  For
 * stderr, which may contain log lines before the error object, use
 * harness_parse_error_json: it parses from the first '{'.  Both return a
 * new reference or NULL.
 */
json_t *harness_parse_json(const char *text);
json_t *harness_parse_error_json(const char *text);

/* A loopback TCP port that was free a moment ago, or -1. */
int harness_free_port(void);

/*
 * Starts `pipnode discovery` on tcp://127.0.0.1:<port> with events on the
 * next chosen port, and waits until discovery.ping succeeds.  The
 * first call picks the ports, and later calls (a restart) reuse them.
 * Returns false when it did not come up within timeout_ms.
 */
bool harness_start_discovery(harness *h, int timeout_ms);

/*
 * The live instances of service (NULL: every service) from discovery's
 * list, as a new JSON array, or NULL when the list call failed.
 */
json_t *harness_instances(harness *h, const char *service);

/*
 * Polls discovery's list every 100 ms until exactly `count` instances of
 * service are live, for at most timeout_ms.  Returns true when reached.
 */
bool harness_wait_instances(harness *h, const char *service, int count,
                            int timeout_ms);

/* True when instance lists url among its rpc URLs. */
bool harness_instance_has_rpc(const json_t *instance, const char *url);

/*
 * Polls method (for example "counters.ping") at endpoint until it
 * succeeds, for at most timeout_ms.  Returns true on success.
 */
bool harness_wait_ready(const char *endpoint, const char *method,
                        int timeout_ms);

/*
 * A client that calls endpoint, or resolves services through
 * discovery_url when endpoint is NULL, with calls timing out after
 * timeout_ms.  Returns NULL when pip_client_new fails (printed on
 * stderr).  The caller frees it with pip_client_free.
 */
pip_client *harness_client_new(const char *endpoint, const char *discovery_url,
                               uint32_t timeout_ms);

/*
 * Calls method with args (stolen, NULL for none) and returns the result,
 * a new reference.  Unlike the rest of the harness it fails the running
 * cmocka test when the call fails, so use it in test bodies only, never
 * in a setup or teardown.
 */
json_t *harness_call_ok(pip_client *client, const char *method, json_t *args);

/*
 * A pipnode that a test may kill and start again on the same loopback
 * port and data folder.
 */
typedef struct harness_node {
    char name[HARNESS_NAME_MAX]; /* names the process and its logs */
    harness_proc *proc;          /* the last start, NULL before the first */
    int port;
    char url[HARNESS_URL_MAX]; /* tcp://127.0.0.1:<port> */
    char data[PATH_MAX];       /* <h->dir>/<name>-data */
} harness_node;

/*
 * Names node, picks a free loopback port for it and places its data
 * folder in the harness folder.  Returns false when no port was free or
 * the path is too long.
 */
bool harness_node_init(harness *h, harness_node *node, const char *name);

/*
 * Starts `pipnode ARGS... --listen <url> --pub tcp://127.0.0.1:0 --data
 * <data>`, where args (NULL-ended) names the services and any further
 * flags.  When ready_method is not NULL, waits up to timeout_ms until
 * that method succeeds at the node's URL.  Returns false, with the reason
 * on stderr, when the node did not start or did not respond in time.
 */
bool harness_node_start(harness *h, harness_node *node,
                        const char *const *args, const char *ready_method,
                        int timeout_ms);
#define HARNESS_NODE_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/*
 * Checks the logs of every child started so far for sanitizer reports,
 * printing any log that contains one.  Returns true when all are clean and
 * no pipcall run printed a report.
 */
bool harness_logs_clean(harness *h);

/* Reads a whole file into a new NUL-terminated string, or NULL. */
char *harness_read_file(const char *path);

int64_t harness_now_ms(void);
void harness_sleep_ms(int ms);

#endif
