/* What the stand-in guests (init.c, hostile.c) share with the real daemon's
 * protocol: the ready signal (one connection to host port 1025 once the API
 * listens, src/guest/ready.rs) and the ticket proof (a SHA-256 (FIPS 180-4)
 * and HMAC (RFC 2104) just big enough, and the answer to
 * GET /api/hello?nonce=N). Tests compile it in front of the guest's own
 * source (common::fake_guest_source).
 */
#define _GNU_SOURCE
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The ready signal: connect to the host's port 1025 and close again. */
static void signal_ready(void) {
    int r = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct sockaddr_vm host = {.svm_family = AF_VSOCK,
                               .svm_cid = VMADDR_CID_HOST,
                               .svm_port = 1025};
    if (r < 0 || connect(r, (struct sockaddr *)&host, sizeof host))
        perror("ready signal");
    if (r >= 0)
        close(r);
}

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

