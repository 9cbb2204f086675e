/* A hostile guest for tests/hostile_guest.rs: what a guest whose kernel a
 * crafted filesystem owns could send. Runs as /init on the project's guest
 * kernel, reads /ticket, signals readiness on host port 1025 like the real
 * daemon, proves it knows the ticket (GET /api/hello, proof.c) and answers
 * HTTP on vsock port 1024, one forked process per connection. Compiled after
 * proof.c (common::fake_guest_source). Status is well-formed (so the host uses the VM); list and
 * extract misbehave according to the last component of the requested path:
 *
 *   list    .../names       entries whose names and link target hold
 *                           terminal escape sequences
 *           .../errtext     a 404 whose error text holds escape sequences
 *           .../stall       headers and "[" of a 100-byte body, then silence
 *           .../hugeheader  a response header line that never ends
 *           .../flood       [] and, from then on, a child that connects to
 *                           host ports 2000-2999 in a loop, forever
 *           anything else   [] (an empty directory)
 *   extract .../pax         a pax header of 20 GiB, then zeros forever
 *           .../longname    a GNU long-name header of 2 GiB, then zeros
 *           .../sparse      a GNU sparse entry (2 KiB mapping to 1 GiB)
 *           .../traversal   entries ../outside, /tmp/file-restore-hostile-abs,
 *                           a symlink ln -> .. and then ln/outside2
 *           .../stall       one tar header of a 1 MiB file, 4 KiB, silence
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char ticket_value[128];
static char ticket_header[256];

static void put(int c, const void *p, size_t n) {
    const char *b = p;
    while (n) {
        ssize_t w = write(c, b, n);
        if (w <= 0)
            _exit(0); /* the host closed: done */
        b += w;
        n -= (size_t)w;
    }
}

static void answer(int c, const char *status, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, strlen(body));
    put(c, head, (size_t)n);
    put(c, body, strlen(body));
}

static void silence(void) {
    for (;;)
        pause();
}

/* Percent-decoding, then base64 (standard or URL-safe alphabet). */
static int b64val(int ch) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+' || ch == '-') return 62;
    if (ch == '/' || ch == '_') return 63;
    return -1;
}

static void query_path(const char *req, char *out, size_t cap) {
    char enc[2048] = {0};
    size_t e = 0;
    const char *q = strstr(req, "path=");
    out[0] = 0;
    if (!q)
        return;
    for (q += 5; *q && *q != '&' && *q != ' ' && e < sizeof enc - 1; q++) {
        if (*q == '%' && q[1] && q[2]) {
            char hex[3] = {q[1], q[2], 0};
            enc[e++] = (char)strtol(hex, NULL, 16);
            q += 2;
        } else {
            enc[e++] = *q;
        }
    }
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < e && o < cap - 1; i++) {
        int v = b64val((unsigned char)enc[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[o] = 0;
}

/* A 512-byte tar header; size as octal, or base-256 when it does not fit. */
static void tar_header(char *h, const char *name, char type, unsigned long long size,
                       const char *link, int gnu) {
    memset(h, 0, 512);
    strncpy(h, name, 99);
    memcpy(h + 100, "0000644", 7);
    memcpy(h + 108, "0000000", 7);
    memcpy(h + 116, "0000000", 7);
    if (size < 077777777777ULL) {
        snprintf(h + 124, 12, "%011llo", size);
    } else {
        h[124] = (char)0x80;
        for (int i = 11; i >= 4; i--) {
            h[124 + i] = (char)(size & 0xff);
            size >>= 8;
        }
    }
    memcpy(h + 136, "00000000000", 11);
    h[156] = type;
    if (link)
        strncpy(h + 157, link, 99);
    if (gnu)
        memcpy(h + 257, "ustar  ", 8);
    else
        memcpy(h + 257, "ustar\0" "00", 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
}

static void stream_head(int c) {
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/x-tar\r\n"
                       "Connection: close\r\n\r\n";
    put(c, head, strlen(head));
}

static void zeros_forever(int c) {
    static char z[65536];
    for (;;)
        put(c, z, sizeof z);
}

static void tar_file(int c, const char *name, const char *content) {
    char h[512], pad[512] = {0};
    size_t n = strlen(content);
    tar_header(h, name, '0', n, NULL, 0);
    put(c, h, 512);
    put(c, content, n);
    put(c, pad, (512 - n % 512) % 512);
}

static void flood(void) {
    if (fork() != 0)
        return;
    for (unsigned i = 0;; i++) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct sockaddr_vm a = {.svm_family = AF_VSOCK,
                                .svm_cid = VMADDR_CID_HOST,
                                .svm_port = 2000 + i % 1000};
        if (s >= 0) {
            (void)connect(s, (struct sockaddr *)&a, sizeof a);
            close(s);
        }
        usleep(200);
    }
}

/* Reads one request head into req (keeping what follows it); 0 at the end. */
static int read_head(int c, char *req, size_t cap, size_t *len) {
    char *end;
    while (!(end = strstr(req, "\r\n\r\n"))) {
        if (*len >= cap - 1)
            return 0;
        ssize_t n = read(c, req + *len, cap - 1 - *len);
        if (n <= 0)
            return 0;
        *len += (size_t)n;
    }
    return (int)(end + 4 - req);
}

static void serve(int c) {
    char req[8192] = {0};
    size_t len = 0;
    int used;
    /* The ticket proof comes first on every connection, answered honestly:
     * this guest is hostile, not ignorant of the ticket. */
    while ((used = read_head(c, req, sizeof req, &len)) > 0 &&
           !strncmp(req, "GET /api/hello", 14)) {
        char proof[65], body[160], head[256];
        req[used - 1] = 0;
        if (!proof_hex(req, ticket_value, proof))
            _exit(0);
        snprintf(body, sizeof body, "{\"api_version\":1,\"proof\":\"%s\"}", proof);
        int n = snprintf(head, sizeof head,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         strlen(body));
        put(c, head, (size_t)n);
        put(c, body, strlen(body));
        memmove(req, req + used, len - (size_t)used);
        len -= (size_t)used;
        memset(req + len, 0, sizeof req - len);
    }
    if (used <= 0)
        _exit(0);
    const char *h = strcasestr(req, "\r\nAuthorization: ");
    int authed = h && !strncmp(h + 17, ticket_header, strlen(ticket_header));
    if (!strncmp(req, "GET /api/status", 15)) {
        answer(c, "200 OK",
               authed ? "{\"api_version\":1,\"alive\":true,\"uptime\":1,\"timeout_left\":600,"
                        "\"idle_timeout\":600,\"scan\":\"done\",\"disks\":[{\"name\":\"disk0\","
                        "\"buckets\":[{\"path\":\"raw/raw\",\"fstype\":\"ext4\",\"size\":1048576,"
                        "\"mounted\":false}]}],\"active_downloads\":0}"
                      : "{\"api_version\":1,\"alive\":true}");
        return;
    }
    if (!authed) {
        answer(c, "401 Unauthorized", "{\"error\":\"missing or invalid ticket\"}");
        return;
    }
    char path[1024];
    query_path(req, path, sizeof path);
    const char *last = strrchr(path, '/');
    last = last ? last + 1 : path;
    if (!strncmp(req, "GET /api/list", 13)) {
        if (!strcmp(last, "names")) {
            answer(c, "200 OK",
                   "[{\"filepath\":\"L2Rpc2swL3Jhdy9yYXcvbmFtZXMvZXZpbBtdMDtvd25lZAduYW1l\","
                   "\"text\":\"evil\\u001b]0;owned\\u0007name\",\"type\":\"l\",\"leaf\":true,"
                   "\"size\":4,\"mtime\":0,\"target\":\"\\u001b[31mred\\u001b[0m\"},"
                   "{\"filepath\":\"L2Rpc2swL3Jhdy9yYXcvbmFtZXMvZGlyG1sySg==\","
                   "\"text\":\"dir\\u001b[2J\",\"type\":\"d\",\"leaf\":false,\"size\":null,"
                   "\"mtime\":0}]");
        } else if (!strcmp(last, "errtext")) {
            answer(c, "404 Not Found", "{\"error\":\"no such \\u001b[2Jthing\\u0007\"}");
        } else if (!strcmp(last, "stall")) {
            const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Content-Length: 100\r\n\r\n[";
            put(c, head, strlen(head));
            silence();
        } else if (!strcmp(last, "hugeheader")) {
            const char *head = "HTTP/1.1 200 OK\r\nX-Endless: ";
            put(c, head, strlen(head));
            char a[4096];
            memset(a, 'a', sizeof a);
            for (;;)
                put(c, a, sizeof a);
        } else {
            if (!strcmp(last, "flood"))
                flood();
            answer(c, "200 OK", "[]");
        }
        return;
    }
    if (!strncmp(req, "GET /api/extract", 16)) {
        char hd[512];
        stream_head(c);
        if (!strcmp(last, "pax")) {
            tar_header(hd, "PaxHeaders/bomb", 'x', 20ULL << 30, NULL, 0);
            put(c, hd, 512);
            zeros_forever(c);
        } else if (!strcmp(last, "longname")) {
            tar_header(hd, "././@LongLink", 'L', 2ULL << 30, NULL, 1);
            put(c, hd, 512);
            zeros_forever(c);
        } else if (!strcmp(last, "sparse")) {
            tar_header(hd, "bomb", 'S', 2048, NULL, 1);
            /* realsize (GNU header offset 483) of 1 GiB, one map entry */
            snprintf(hd + 483, 12, "%011llo", 1ULL << 30);
            snprintf(hd + 386, 12, "%011o", 0);
            snprintf(hd + 398, 12, "%011o", 2048);
            memset(hd + 148, ' ', 8);
            unsigned sum = 0;
            for (int i = 0; i < 512; i++)
                sum += (unsigned char)hd[i];
            snprintf(hd + 148, 8, "%06o", sum);
            put(c, hd, 512);
            zeros_forever(c);
        } else if (!strcmp(last, "traversal")) {
            tar_file(c, "inside", "fine\n");
            tar_file(c, "../outside", "escaped\n");
            tar_file(c, "/tmp/file-restore-hostile-abs", "escaped\n");
            tar_header(hd, "ln", '2', 0, "..", 0);
            put(c, hd, 512);
            tar_file(c, "ln/outside2", "escaped\n");
            char end[1024] = {0};
            put(c, end, sizeof end);
        } else if (!strcmp(last, "stall")) {
            tar_header(hd, "slow", '0', 1 << 20, NULL, 0);
            put(c, hd, 512);
            char part[4096];
            memset(part, 'x', sizeof part);
            put(c, part, sizeof part);
            silence();
        } else {
            char end[1024] = {0};
            put(c, end, sizeof end);
        }
        return;
    }
    answer(c, "404 Not Found", "{\"error\":\"hostile guest: no such endpoint\"}");
}

int main(void) {
    int tf = open("/ticket", O_RDONLY);
    if (tf < 0 || read(tf, ticket_value, sizeof ticket_value - 1) <= 0)
        perror("/ticket");
    snprintf(ticket_header, sizeof ticket_header, "FileRestoreTicket %s\r\n", ticket_value);
    signal(SIGCHLD, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);

    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK,
                               .svm_cid = VMADDR_CID_ANY,
                               .svm_port = 1024};
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 64)) {
        perror("vsock");
        return 1;
    }
    printf("hostile guest listening\n");
    fflush(stdout);
    signal_ready();
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
        if (fork() == 0) {
            close(s);
            serve(c);
            close(c);
            _exit(0);
        }
        close(c);
    }
}
