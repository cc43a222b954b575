/*
 * pipkey: makes the keys that seal and sign a deployment's traffic.
 *
 *   pipkey network FILE            a new network key
 *   pipkey identity NAME FILE      a new identity key pair; prints its
 *                                  public-key line
 *   pipkey public FILE             the public-key line of an identity
 *
 * Key files are created with mode 0600 and never overwritten.  Nothing
 * secret is printed.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "pip/seal.h"

#define PIPKEY_HINT "Run 'pipkey --help' for usage."
#define PIPKEY_LINE_MAX 256

static const char pipkey_usage[] =
    "Usage: pipkey network FILE\n"
    "       pipkey identity NAME FILE\n"
    "       pipkey public FILE\n"
    "\n"
    "Makes the keys of a deployment (see proto/PROTOCOL.md, \"Security\").\n"
    "\n"
    "  network FILE        Writes a new network key. Every node and tool of\n"
    "                      the deployment loads the same file with\n"
    "                      --network-key-file (or PIP_NETWORK_KEY_FILE);\n"
    "                      their traffic is then sealed with it.\n"
    "  identity NAME FILE  Writes a new identity (an Ed25519 key pair) named\n"
    "                      NAME (letters, digits, '.', '_', '-'; at most 63)\n"
    "                      and prints its public-key line. A node loads it\n"
    "                      with --identity-file and signs what it sends.\n"
    "  public FILE         Prints the public-key line of an identity file.\n"
    "                      Collect such lines in a file and pass it with\n"
    "                      --trusted-keys to accept only those senders.\n"
    "\n"
    "Key files are created with mode 0600 and never overwritten; copy them\n"
    "to the other hosts over a channel you trust (scp, a config manager).\n"
    "\n"
    "Exit status: 0 on success, 1 when a file cannot be written or read,\n"
    "2 on a usage error.\n";

static int
pipkey_fail(const pip_error *err)
{
    fprintf(stderr, "pipkey: %s\n", err->message);
    return 1;
}

static int
pipkey_network(const char *path)
{
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_key_write_network(path, &err);
    if (rv != PIP_OK) {
        rv = pipkey_fail(&err);
    } else {
        fprintf(stderr, "pipkey: wrote a network key to %s (mode 0600)\n",
                path);
    }
    pip_error_fini(&err);
    return rv;
}

static int
pipkey_identity(const char *name, const char *path)
{
    char line[PIPKEY_LINE_MAX];
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_key_write_identity(path, name, line, sizeof(line), &err);
    if (rv != PIP_OK) {
        rv = pipkey_fail(&err);
    } else {
        fprintf(stderr, "pipkey: wrote identity %s to %s (mode 0600)\n",
                name, path);
        printf("%s\n", line);
    }
    pip_error_fini(&err);
    return rv;
}

static int
pipkey_public(const char *path)
{
    char line[PIPKEY_LINE_MAX];
    pip_error err;
    int rv;

    pip_error_init(&err);
    rv = pip_key_public_line(path, line, sizeof(line), &err);
    if (rv != PIP_OK) {
        rv = pipkey_fail(&err);
    } else {
        printf("%s\n", line);
    }
    pip_error_fini(&err);
    return rv;
}

int
main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd != NULL &&
        (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)) {
        fputs(pipkey_usage, stdout);
        return 0;
    }
    if (cmd == NULL) {
        return cli_usage_error("pipkey", PIPKEY_HINT, 2,
                               "a command is required: network, identity "
                               "or public");
    }
    if (strcmp(cmd, "network") == 0 && argc == 3) {
        return pipkey_network(argv[2]);
    }
    if (strcmp(cmd, "identity") == 0 && argc == 4) {
        return pipkey_identity(argv[2], argv[3]);
    }
    if (strcmp(cmd, "public") == 0 && argc == 3) {
        return pipkey_public(argv[2]);
    }
    if (strcmp(cmd, "network") == 0 || strcmp(cmd, "identity") == 0 ||
        strcmp(cmd, "public") == 0) {
        return cli_usage_error("pipkey", PIPKEY_HINT, 2,
                               "wrong number of arguments for '%s'", cmd);
    }
    return cli_usage_error("pipkey", PIPKEY_HINT, 2,
                           "unknown command '%s'; expected network, "
                           "identity or public",
                           cmd);
}
