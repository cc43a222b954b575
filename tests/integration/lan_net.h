/*
 * A small LAN built from Linux network namespaces, for tests that need
 * several hosts on one machine.  One "switch" namespace contains a Linux
 * bridge, and each host namespace is joined to it by a veth pair whose
 * host end is eth0 with the address LAN_NET_PREFIX.<index + 1>/24.  Both
 * ends of each pair are created inside the namespaces, so the namespace
 * that the test starts in gains no interface or address.
 *
 * Namespace names are "piplan-<pid>-sw" and "piplan-<pid>-h<index>", so
 * parallel runs do not collide.  lan_net_create() first deletes the
 * namespaces of runs whose process no longer exists.  Everything here
 * needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the `ip` command of
 * iproute2.  A lan_net is used from one thread.
 */
#ifndef PIP_TEST_LAN_NET_H
#define PIP_TEST_LAN_NET_H

#include <stdbool.h>
#include <stddef.h>

#define LAN_NET_MAX_HOSTS 8
#define LAN_NET_NAME_MAX 48
/* The first three octets of the test subnet.  The subnet exists only
 * inside the namespaces, so it cannot clash with the machine's networks. */
#define LAN_NET_PREFIX "10.231.77"
/* The home namespace, for lan_net_enter(). */
#define LAN_NET_HOME (-1)

typedef struct lan_net {
    char prefix[32];               /* "piplan-<pid>" */
    char ip_path[64];              /* the ip program */
    int host_count;
    bool switch_created;
    bool host_created[LAN_NET_MAX_HOSTS];
    int home_fd;                   /* netns of the thread at create */
    int current;                   /* host the thread is in, or
                                      LAN_NET_HOME */
    int host_fd[LAN_NET_MAX_HOSTS];
} lan_net;

typedef enum lan_net_status {
    LAN_NET_READY,
    LAN_NET_NOT_PERMITTED, /* not root, no ip command, or no netns */
    LAN_NET_FAILED,        /* permitted, but a later step failed */
} lan_net_status;

/*
 * Creates the switch and host_count hosts with their links up.  On any
 * status but LAN_NET_READY, reason receives why (for the skip or failure
 * message) and whatever was created is removed again.
 */
lan_net_status lan_net_create(lan_net *net, int host_count, char *reason,
                              size_t reason_len);

/*
 * Returns the calling thread to the home namespace and deletes every
 * namespace that lan_net_create() made.  A namespace that still has
 * processes lives on, nameless, until they exit.  Safe to call twice.
 */
void lan_net_destroy(lan_net *net);

/*
 * Moves the calling thread into the namespace of host (LAN_NET_HOME: back
 * home).  Threads and processes it creates afterwards start there.
 * Returns 0, or -1 with the reason printed on stderr.
 */
int lan_net_enter(lan_net *net, int host);

/*
 * Sets the switch end of host's veth pair down or up, as pulling and
 * plugging its cable would.  Returns 0, or -1 with ip's output printed.
 */
int lan_net_set_link(lan_net *net, int host, bool up);

/* Writes the address of host, such as "10.231.77.2", into out. */
void lan_net_address(int host, char *out, size_t len);

#endif
