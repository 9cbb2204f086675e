/* A stand-in for the restore daemon, used by tests/launch_fake_guest.rs
 * to exercise start_vm's success path and stop_vm before the real daemon
 * and initramfs exist. Runs as /init on the project's guest kernel (virtio
 * and vsock built in): reads /ticket and answers HTTP/1.1 (several requests
 * per connection) on vsock port 1024:
 *   GET /api/hello?nonce=N -> {"api_version":1,"proof":HMAC-SHA256(ticket, N || context)}
 *   GET /api/status  -> {"api_version":1,"alive":true[,"uptime":1]}
 *   anything without the ticket -> 401 {"error":"missing or invalid ticket"}
 *   POST /api/stop   -> 200 {} but keeps running (so stop_vm must use QMP)
 *   anything else    -> 404 {"error":"fake daemon: no such endpoint"}
 * An optional /mode file changes that:
 *   wrong-proof  the proof is made with another key (a VM that does not know the ticket)
 *   stall        connections are accepted and read, never answered
 *   chatty       a child prints to the console without end (a guest flooding its log)
 * Once it listens it connects to the host's port 1025 and closes again: the
 * ready signal the host waits for before it connects (src/guest/ready.rs).
 * Compiled after proof.c (common::fake_guest_source).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static void answer(int c, const char *status, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     status, strlen(body));
    if (write(c, head, n) < 0 || write(c, body, strlen(body)) < 0)
        perror("write");
}

int main(void) {
    char ticket[128] = {0}, value[256], mode[32] = {0};
    int tf = open("/ticket", O_RDONLY);
    if (tf < 0 || read(tf, ticket, sizeof ticket - 1) <= 0)
        perror("/ticket");
    snprintf(value, sizeof value, "FileRestoreTicket %s\r\n", ticket);
    int mf = open("/mode", O_RDONLY);
    if (mf >= 0 && read(mf, mode, sizeof mode - 1) < 0)
        perror("/mode");
    int stall = !strncmp(mode, "stall", 5);
    int chatty = !strncmp(mode, "chatty", 6);
    const char *proof_key = !strncmp(mode, "wrong-proof", 11) ? "not-the-ticket" : ticket;

    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK,
                               .svm_cid = VMADDR_CID_ANY,
                               .svm_port = 1024};
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 8)) {
        perror("vsock");
        return 1;
    }
    printf("fake daemon listening%s%s\n", mode[0] ? ", mode " : "", mode);
    fflush(stdout);
    signal_ready();
    if (chatty && fork() == 0) {
        static char line[4096];
        memset(line, 'x', sizeof line - 1);
        line[sizeof line - 2] = '\n';
        for (;;)
            fputs(line, stdout);
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        printf("fake daemon: connection\n");
        fflush(stdout);
        char req[8192] = {0};
        size_t len = 0;
        for (;;) {
            char *end;
            while (!(end = strstr(req, "\r\n\r\n")) && len < sizeof req - 1) {
                ssize_t n = read(c, req + len, sizeof req - 1 - len);
                if (n <= 0)
                    break;
                len += n;
            }
            if (!end || stall)
                break; /* end of stream, a head too large, or stall mode */
            *end = 0;
            /* Header names are case-insensitive (hyper sends them lowercase). */
            char *h = strcasestr(req, "\r\nAuthorization: ");
            int authed = h && !strncmp(h + 17, value, strlen(value) - 2) &&
                         (h[17 + strlen(value) - 2] == 0 || h[17 + strlen(value) - 2] == '\r');
            char proof[65], body[160];
            if (!strncmp(req, "GET /api/hello", 14) && proof_hex(req, proof_key, proof)) {
                snprintf(body, sizeof body, "{\"api_version\":1,\"proof\":\"%s\"}", proof);
                answer(c, "200 OK", body);
            } else if (!strncmp(req, "GET /api/status", 15))
                answer(c, "200 OK",
                       authed ? "{\"api_version\":1,\"alive\":true,\"uptime\":1}"
                              : "{\"api_version\":1,\"alive\":true}");
            else if (!authed)
                answer(c, "401 Unauthorized", "{\"error\":\"missing or invalid ticket\"}");
            else if (!strncmp(req, "POST /api/stop", 14))
                answer(c, "200 OK", "{}");
            else
                answer(c, "404 Not Found", "{\"error\":\"fake daemon: no such endpoint\"}");
            /* Keep what followed the head (the next request). */
            size_t used = end + 4 - req;
            memmove(req, req + used, len - used);
            len -= used;
            memset(req + len, 0, sizeof req - len);
        }
        if (stall) {
            /* Keep the connection open and silent; serve the next one. */
            continue;
        }
        close(c);
    }
}
