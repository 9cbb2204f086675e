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

/* --- SHA-256 (FIPS 180-4) and HMAC (RFC 2104), just enough for the proof. --- */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, k, t1, t2;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | p[4 * i + 1] << 16 | p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++)
        w[i] = w[i - 16] + (ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3)) + w[i - 7] +
               (ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10));
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

/* SHA-256 of the concatenation of two buffers (enough for HMAC). */
static void sha256_2(const unsigned char *x, size_t xl, const unsigned char *y, size_t yl,
                     unsigned char out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    unsigned char buf[64];
    size_t n = 0, total = xl + yl;
    for (size_t i = 0; i < total; i++) {
        buf[n++] = i < xl ? x[i] : y[i - xl];
        if (n == 64)
            sha256_block(h, buf), n = 0;
    }
    buf[n++] = 0x80;
    if (n > 56) {
        memset(buf + n, 0, 64 - n);
        sha256_block(h, buf), n = 0;
    }
    memset(buf + n, 0, 56 - n);
    uint64_t bits = (uint64_t)total * 8;
    for (int i = 0; i < 8; i++)
        buf[56 + i] = bits >> (56 - 8 * i);
    sha256_block(h, buf);
    for (int i = 0; i < 32; i++)
        out[i] = h[i / 4] >> (24 - 8 * (i % 4));
}

static void hmac_sha256(const char *key, const unsigned char *msg, size_t len,
                        unsigned char out[32]) {
    unsigned char k[64] = {0}, ipad[64], opad[64], inner[32];
    size_t kl = strlen(key);
    if (kl > 64)
        sha256_2((const unsigned char *)key, kl, NULL, 0, k);
    else
        memcpy(k, key, kl);
    for (int i = 0; i < 64; i++)
        ipad[i] = k[i] ^ 0x36, opad[i] = k[i] ^ 0x5c;
    sha256_2(ipad, 64, msg, len, inner);
    sha256_2(opad, 64, inner, 32, out);
}

static const char CONTEXT[] = "file-restore guest ticket proof v1";

/* The proof of the hex nonce after "nonce=" in req, as hex; 0 if none. */
static int proof_hex(const char *req, const char *key, char out[65]) {
    const char *p = strstr(req, "nonce=");
    unsigned char msg[32 + sizeof CONTEXT], mac[32];
    if (!p)
        return 0;
    p += 6;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(p + 2 * i, "%2x", &v) != 1)
            return 0;
        msg[i] = v;
    }
    memcpy(msg + 32, CONTEXT, sizeof CONTEXT - 1);
    hmac_sha256(key, msg, 32 + sizeof CONTEXT - 1, mac);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", mac[i]);
    return 1;
}

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
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0)
            continue;
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
