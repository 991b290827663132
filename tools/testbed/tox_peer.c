/*
 * tox_peer: a small real c-toxcore peer for interop tests and benchmarks, driven by a line
 * protocol (tools/testbed/tox_peer.ts is the driver).
 *
 *   tox_peer [--relay HOST:PORT:PUBKEYHEX]... [--name NAME] [--no-bootstrap] [--no-tcp-relay]
 *            [--log]
 *
 * Each --relay is given to tox_add_tcp_relay and (unless --no-bootstrap) tox_bootstrap. With UDP
 * off both are needed for two peers on one tox-bootstrapd to find each other (measured on
 * 0.2.18): with only tox_add_tcp_relay the onion has no path nodes and the peer never reports
 * itself connected; with only tox_bootstrap it never opens a TCP relay connection. With both,
 * `self tcp` comes after ~7.5 s and `friend 0 tcp` ~9 s after the friends were added.
 * Tox options: UDP off, IPv6 off, local discovery off, hole punching off, no savedata.
 * --log writes toxcore's log messages to stderr.
 *
 * stdin: one command per line; stdout: one event or reply per line, flushed after each line.
 * Binary data is lower-case hex (upper case is accepted on input). See tox_peer.ts for the
 * grammar.
 *
 * Build: gcc -Wall -Wextra -O2 -o tox_peer tox_peer.c $(pkg-config --cflags --libs toxcore)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tox/tox.h>

#define MAX_RELAYS 16
#define LINE_MAX_BYTES (64 * 1024)
#define MAX_FRIENDS 4096
#define MAX_PENDING_REQUESTS 256

/* ------------------------------------------------------------------------------------------ */
/* Time and output */

static struct timespec g_start;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - g_start.tv_sec) * 1000.0 + (double)(ts.tv_nsec - g_start.tv_nsec) / 1e6;
}

/* One line per call, flushed; if stdout is gone there is nobody to talk to: exit. */
__attribute__((format(printf, 1, 2)))
static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        _exit(3);
    }
}

static char *to_hex(const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(len * 2 + 1);
    if (s == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < len; ++i) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 15];
    }
    s[len * 2] = '\0';
    return s;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes hex into buf (capacity cap). Returns the length, or -1 if not valid hex / too long. */
static long from_hex(const char *hex, uint8_t *buf, size_t cap)
{
    const size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; ++i) {
        const int hi = hex_nibble(hex[2 * i]);
        const int lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        buf[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(n / 2);
}

static bool parse_u32(const char *s, uint32_t *v)
{
    if (s == NULL || *s == '\0' || *s == '-' || *s == '+') return false;
    char *end;
    errno = 0;
    const unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || x > UINT32_MAX) return false;
    *v = (uint32_t)x;
    return true;
}

static const char *connection_name(Tox_Connection c)
{
    switch (c) {
        case TOX_CONNECTION_TCP: return "tcp";
        case TOX_CONNECTION_UDP: return "udp";
        default: return "none";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Error names */

static const char *err_new_name(Tox_Err_New e)
{
    switch (e) {
        case TOX_ERR_NEW_OK: return "TOX_ERR_NEW_OK";
        case TOX_ERR_NEW_NULL: return "TOX_ERR_NEW_NULL";
        case TOX_ERR_NEW_MALLOC: return "TOX_ERR_NEW_MALLOC";
        case TOX_ERR_NEW_PORT_ALLOC: return "TOX_ERR_NEW_PORT_ALLOC";
        case TOX_ERR_NEW_PROXY_BAD_TYPE: return "TOX_ERR_NEW_PROXY_BAD_TYPE";
        case TOX_ERR_NEW_PROXY_BAD_HOST: return "TOX_ERR_NEW_PROXY_BAD_HOST";
        case TOX_ERR_NEW_PROXY_BAD_PORT: return "TOX_ERR_NEW_PROXY_BAD_PORT";
        case TOX_ERR_NEW_PROXY_NOT_FOUND: return "TOX_ERR_NEW_PROXY_NOT_FOUND";
        case TOX_ERR_NEW_LOAD_ENCRYPTED: return "TOX_ERR_NEW_LOAD_ENCRYPTED";
        case TOX_ERR_NEW_LOAD_BAD_FORMAT: return "TOX_ERR_NEW_LOAD_BAD_FORMAT";
    }
    return "TOX_ERR_NEW_UNKNOWN";
}

static const char *err_bootstrap_name(Tox_Err_Bootstrap e)
{
    switch (e) {
        case TOX_ERR_BOOTSTRAP_OK: return "TOX_ERR_BOOTSTRAP_OK";
        case TOX_ERR_BOOTSTRAP_NULL: return "TOX_ERR_BOOTSTRAP_NULL";
        case TOX_ERR_BOOTSTRAP_BAD_HOST: return "TOX_ERR_BOOTSTRAP_BAD_HOST";
        case TOX_ERR_BOOTSTRAP_BAD_PORT: return "TOX_ERR_BOOTSTRAP_BAD_PORT";
    }
    return "TOX_ERR_BOOTSTRAP_UNKNOWN";
}

static const char *err_friend_add_name(Tox_Err_Friend_Add e)
{
    switch (e) {
        case TOX_ERR_FRIEND_ADD_OK: return "TOX_ERR_FRIEND_ADD_OK";
        case TOX_ERR_FRIEND_ADD_NULL: return "TOX_ERR_FRIEND_ADD_NULL";
        case TOX_ERR_FRIEND_ADD_TOO_LONG: return "TOX_ERR_FRIEND_ADD_TOO_LONG";
        case TOX_ERR_FRIEND_ADD_NO_MESSAGE: return "TOX_ERR_FRIEND_ADD_NO_MESSAGE";
        case TOX_ERR_FRIEND_ADD_OWN_KEY: return "TOX_ERR_FRIEND_ADD_OWN_KEY";
        case TOX_ERR_FRIEND_ADD_ALREADY_SENT: return "TOX_ERR_FRIEND_ADD_ALREADY_SENT";
        case TOX_ERR_FRIEND_ADD_BAD_CHECKSUM: return "TOX_ERR_FRIEND_ADD_BAD_CHECKSUM";
        case TOX_ERR_FRIEND_ADD_SET_NEW_NOSPAM: return "TOX_ERR_FRIEND_ADD_SET_NEW_NOSPAM";
        case TOX_ERR_FRIEND_ADD_MALLOC: return "TOX_ERR_FRIEND_ADD_MALLOC";
    }
    return "TOX_ERR_FRIEND_ADD_UNKNOWN";
}

static const char *err_send_message_name(Tox_Err_Friend_Send_Message e)
{
    switch (e) {
        case TOX_ERR_FRIEND_SEND_MESSAGE_OK: return "TOX_ERR_FRIEND_SEND_MESSAGE_OK";
        case TOX_ERR_FRIEND_SEND_MESSAGE_NULL: return "TOX_ERR_FRIEND_SEND_MESSAGE_NULL";
        case TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_FOUND:
            return "TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_FOUND";
        case TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_CONNECTED:
            return "TOX_ERR_FRIEND_SEND_MESSAGE_FRIEND_NOT_CONNECTED";
        case TOX_ERR_FRIEND_SEND_MESSAGE_SENDQ: return "TOX_ERR_FRIEND_SEND_MESSAGE_SENDQ";
        case TOX_ERR_FRIEND_SEND_MESSAGE_TOO_LONG: return "TOX_ERR_FRIEND_SEND_MESSAGE_TOO_LONG";
        case TOX_ERR_FRIEND_SEND_MESSAGE_EMPTY: return "TOX_ERR_FRIEND_SEND_MESSAGE_EMPTY";
    }
    return "TOX_ERR_FRIEND_SEND_MESSAGE_UNKNOWN";
}

static const char *err_set_info_name(Tox_Err_Set_Info e)
{
    switch (e) {
        case TOX_ERR_SET_INFO_OK: return "TOX_ERR_SET_INFO_OK";
        case TOX_ERR_SET_INFO_NULL: return "TOX_ERR_SET_INFO_NULL";
        case TOX_ERR_SET_INFO_TOO_LONG: return "TOX_ERR_SET_INFO_TOO_LONG";
    }
    return "TOX_ERR_SET_INFO_UNKNOWN";
}

static const char *err_custom_packet_name(Tox_Err_Friend_Custom_Packet e)
{
    switch (e) {
        case TOX_ERR_FRIEND_CUSTOM_PACKET_OK: return "TOX_ERR_FRIEND_CUSTOM_PACKET_OK";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_NULL: return "TOX_ERR_FRIEND_CUSTOM_PACKET_NULL";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_FOUND:
            return "TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_FOUND";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_CONNECTED:
            return "TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_CONNECTED";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_INVALID: return "TOX_ERR_FRIEND_CUSTOM_PACKET_INVALID";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_EMPTY: return "TOX_ERR_FRIEND_CUSTOM_PACKET_EMPTY";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_TOO_LONG: return "TOX_ERR_FRIEND_CUSTOM_PACKET_TOO_LONG";
        case TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ: return "TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ";
    }
    return "TOX_ERR_FRIEND_CUSTOM_PACKET_UNKNOWN";
}

static const char *err_set_typing_name(Tox_Err_Set_Typing e)
{
    switch (e) {
        case TOX_ERR_SET_TYPING_OK: return "TOX_ERR_SET_TYPING_OK";
        case TOX_ERR_SET_TYPING_FRIEND_NOT_FOUND: return "TOX_ERR_SET_TYPING_FRIEND_NOT_FOUND";
    }
    return "TOX_ERR_SET_TYPING_UNKNOWN";
}

/* ------------------------------------------------------------------------------------------ */
/* Per-friend custom lossless packet accounting */

typedef struct {
    uint64_t received;     /* every custom lossless packet */
    uint64_t in_order;     /* seq == expected next */
    uint64_t out_of_order; /* seq != expected next (duplicates + jumps) */
    uint64_t duplicates;   /* seq < expected next */
    uint64_t gaps;         /* sequence numbers skipped over by jumps ahead */
    uint64_t short_packets; /* fewer than 5 bytes: no sequence number */
    uint32_t expected;     /* next expected seq */
    double first_ms;       /* -1: none yet */
    double last_ms;
    uint32_t send_seq;     /* next seq for our bursts to this friend */
} Friend_Stats;

static Friend_Stats *g_stats = NULL;
static size_t g_stats_len = 0;

static Friend_Stats *stats_for(uint32_t friend_number)
{
    if (friend_number >= MAX_FRIENDS) return NULL;
    if (friend_number >= g_stats_len) {
        const size_t len = (size_t)friend_number + 1;
        Friend_Stats *s = realloc(g_stats, len * sizeof(Friend_Stats));
        if (s == NULL) return NULL;
        for (size_t i = g_stats_len; i < len; ++i) {
            memset(&s[i], 0, sizeof(Friend_Stats));
            s[i].first_ms = -1;
            s[i].last_ms = -1;
        }
        g_stats = s;
        g_stats_len = len;
    }
    return &g_stats[friend_number];
}

/* ------------------------------------------------------------------------------------------ */
/* Callbacks */

static bool g_verbose = false;
static bool g_log = false;

static void on_log(Tox *tox, Tox_Log_Level level, const char *file, uint32_t line, const char *func,
                   const char *message, void *user_data)
{
    (void)tox;
    (void)user_data;
    if (!g_log) return;
    static const char *const names[] = { "TRACE", "DEBUG", "INFO", "WARNING", "ERROR" };
    const char *name = (unsigned)level < 5 ? names[level] : "?";
    fprintf(stderr, "%.3f %s %s:%" PRIu32 " %s: %s\n", now_ms(), name, file, line, func, message);
}

/* The time goes on the line itself: the driver reads it later, and a benchmark of "start to
 * online" must not include pipe and event-loop latency on the reading side. */
static void on_self_connection(Tox *tox, Tox_Connection status, void *user_data)
{
    (void)tox;
    (void)user_data;
    out("self %s %.3f", connection_name(status), now_ms());
}

static void on_friend_connection(Tox *tox, uint32_t n, Tox_Connection status, void *user_data)
{
    (void)tox;
    (void)user_data;
    out("friend %" PRIu32 " %s %.3f", n, connection_name(status), now_ms());
}

/* Requests are only reported and remembered; `accept` answers them. Nothing is accepted on its
 * own, so a test sees exactly what a user would be asked. */
static uint8_t g_pending[MAX_PENDING_REQUESTS][TOX_PUBLIC_KEY_SIZE];
static size_t g_pending_len = 0;

static long pending_find(const uint8_t *pk)
{
    for (size_t i = 0; i < g_pending_len; ++i) {
        if (memcmp(g_pending[i], pk, TOX_PUBLIC_KEY_SIZE) == 0) return (long)i;
    }
    return -1;
}

static void on_friend_request(Tox *tox, const uint8_t *pk, const uint8_t *msg, size_t len,
                              void *user_data)
{
    (void)tox;
    (void)user_data;
    /* When full, the request is still reported; only `accept` of it will fail (no_request). */
    if (pending_find(pk) < 0 && g_pending_len < MAX_PENDING_REQUESTS) {
        memcpy(g_pending[g_pending_len++], pk, TOX_PUBLIC_KEY_SIZE);
    }
    char *pk_hex = to_hex(pk, TOX_PUBLIC_KEY_SIZE);
    char *msg_hex = to_hex(msg, len);
    out("friend_request %s %s %.3f", pk_hex, msg_hex, now_ms());
    free(pk_hex);
    free(msg_hex);
}

static void on_message(Tox *tox, uint32_t n, Tox_Message_Type type, const uint8_t *msg, size_t len,
                       void *user_data)
{
    (void)tox;
    (void)user_data;
    char *hex = to_hex(msg, len);
    out("message %" PRIu32 " %s %s", n, type == TOX_MESSAGE_TYPE_ACTION ? "action" : "normal", hex);
    free(hex);
}

static void on_receipt(Tox *tox, uint32_t n, uint32_t message_id, void *user_data)
{
    (void)tox;
    (void)user_data;
    out("receipt %" PRIu32 " %" PRIu32, n, message_id);
}

static void on_name(Tox *tox, uint32_t n, const uint8_t *name, size_t len, void *user_data)
{
    (void)tox;
    (void)user_data;
    char *hex = to_hex(name, len);
    out("name %" PRIu32 " %s", n, hex);
    free(hex);
}

static void on_status_message(Tox *tox, uint32_t n, const uint8_t *msg, size_t len, void *user_data)
{
    (void)tox;
    (void)user_data;
    char *hex = to_hex(msg, len);
    out("status_message %" PRIu32 " %s", n, hex);
    free(hex);
}

static void on_user_status(Tox *tox, uint32_t n, Tox_User_Status status, void *user_data)
{
    (void)tox;
    (void)user_data;
    out("user_status %" PRIu32 " %d", n, (int)status);
}

static void on_typing(Tox *tox, uint32_t n, bool typing, void *user_data)
{
    (void)tox;
    (void)user_data;
    out("typing %" PRIu32 " %d", n, typing ? 1 : 0);
}

static void on_lossy(Tox *tox, uint32_t n, const uint8_t *data, size_t len, void *user_data)
{
    (void)tox;
    (void)user_data;
    char *hex = to_hex(data, len);
    out("lossy %" PRIu32 " %s", n, hex);
    free(hex);
}

static void on_lossless(Tox *tox, uint32_t n, const uint8_t *data, size_t len, void *user_data)
{
    (void)tox;
    (void)user_data;
    const double t = now_ms();
    Friend_Stats *s = stats_for(n);
    if (s != NULL) {
        ++s->received;
        if (s->first_ms < 0) s->first_ms = t;
        s->last_ms = t;
        if (len < 5) {
            ++s->short_packets;
        } else {
            const uint32_t seq = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 |
                                 (uint32_t)data[3] << 8 | (uint32_t)data[4];
            if (seq == s->expected) {
                ++s->in_order;
                ++s->expected;
            } else {
                ++s->out_of_order;
                if (seq < s->expected) {
                    ++s->duplicates;
                } else {
                    s->gaps += seq - s->expected;
                    s->expected = seq + 1;
                }
            }
        }
    }
    if (g_verbose) {
        char *hex = to_hex(data, len);
        out("lossless %" PRIu32 " %s", n, hex);
        free(hex);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Commands */

static uint8_t g_buf[LINE_MAX_BYTES];

static void print_dht_id(Tox *tox, const char *prefix)
{
    uint8_t dht[TOX_PUBLIC_KEY_SIZE];
    tox_self_get_dht_id(tox, dht);
    char *hex = to_hex(dht, sizeof dht);
    out("%s%s", prefix, hex);
    free(hex);
}

/* Sends `count` packets, iterating tox while the send queue is full. */
static void cmd_burst(Tox *tox, uint32_t n, uint32_t count, uint32_t size, uint32_t id)
{
    if (size < 5 || size > TOX_MAX_CUSTOM_PACKET_SIZE) {
        out("error burst bad_size 0");
        return;
    }
    if (id > 255) {
        out("error burst bad_id 0");
        return;
    }
    Friend_Stats *s = stats_for(n);
    if (s == NULL) {
        out("error burst TOX_ERR_FRIEND_CUSTOM_PACKET_FRIEND_NOT_FOUND 0");
        return;
    }
    uint8_t packet[TOX_MAX_CUSTOM_PACKET_SIZE];
    packet[0] = (uint8_t)id;
    for (uint32_t i = 5; i < size; ++i) packet[i] = (uint8_t)i;
    const double start = now_ms();
    double last_iterate = start;
    double last_progress = start;
    uint32_t sent = 0;
    uint64_t sendq = 0;
    while (sent < count) {
        const uint32_t seq = s->send_seq;
        packet[1] = (uint8_t)(seq >> 24);
        packet[2] = (uint8_t)(seq >> 16);
        packet[3] = (uint8_t)(seq >> 8);
        packet[4] = (uint8_t)seq;
        Tox_Err_Friend_Custom_Packet err;
        tox_friend_send_lossless_packet(tox, n, packet, size, &err);
        if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            ++sent;
            ++s->send_seq;
            /* keep toxcore running during long bursts that never hit SENDQ */
            if (now_ms() - last_iterate >= tox_iteration_interval(tox)) {
                tox_iterate(tox, NULL);
                last_iterate = now_ms();
            }
        } else if (err == TOX_ERR_FRIEND_CUSTOM_PACKET_SENDQ) {
            ++sendq;
            tox_iterate(tox, NULL);
            last_iterate = now_ms();
            /* the callbacks above may have reallocated the stats array */
            s = stats_for(n);
            if (s == NULL) {
                out("error burst stats_alloc %" PRIu32, sent);
                return;
            }
            struct timespec ts = { 0, 1000000L }; /* 1 ms */
            nanosleep(&ts, NULL);
        } else {
            out("error burst %s %" PRIu32, err_custom_packet_name(err), sent);
            return;
        }
        if (now_ms() - last_progress >= 1000.0) {
            last_progress = now_ms();
            out("burst_progress %" PRIu32 " %" PRIu32 " %" PRIu32 " %.3f %" PRIu64, n, sent, count,
                last_progress - start, sendq);
        }
        s = stats_for(n);
        if (s == NULL) {
            out("error burst stats_alloc %" PRIu32, sent);
            return;
        }
    }
    out("ok burst %" PRIu32 " %.3f %" PRIu64, count, now_ms() - start, sendq);
}

/* Returns false when the program should quit. */
static bool handle_command(Tox *tox, char *line)
{
    char *argv[8];
    int argc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r", &save); tok != NULL && argc < 8;
         tok = strtok_r(NULL, " \t\r", &save)) {
        argv[argc++] = tok;
    }
    if (argc == 0) return true;
    const char *cmd = argv[0];

#define NEED_ARGS(k)                                                                   \
    do {                                                                               \
        if (argc != (k) + 1) {                                                         \
            out("error %s usage", cmd);                                                \
            return true;                                                               \
        }                                                                              \
    } while (0)
#define NEED_U32(i, var)                                                               \
    do {                                                                               \
        if (!parse_u32(argv[i], &(var))) {                                             \
            out("error %s bad_number", cmd);                                           \
            return true;                                                               \
        }                                                                              \
    } while (0)
#define NEED_HEX(i, len, cap)                                                          \
    do {                                                                               \
        (len) = from_hex(argv[i], g_buf, (cap));                                       \
        if ((len) < 0) {                                                               \
            out("error %s bad_hex", cmd);                                              \
            return true;                                                               \
        }                                                                              \
    } while (0)

    if (strcmp(cmd, "quit") == 0) {
        out("ok quit");
        return false;
    } else if (strcmp(cmd, "add") == 0) {
        NEED_ARGS(1);
        long len;
        NEED_HEX(1, len, sizeof g_buf);
        if (len != TOX_PUBLIC_KEY_SIZE) {
            out("error add bad_key_length");
            return true;
        }
        Tox_Err_Friend_Add err;
        const uint32_t n = tox_friend_add_norequest(tox, g_buf, &err);
        if (err != TOX_ERR_FRIEND_ADD_OK) {
            out("error add %s", err_friend_add_name(err));
        } else {
            stats_for(n);
            out("ok add %" PRIu32, n);
        }
    } else if (strcmp(cmd, "request") == 0) {
        /* tox_friend_add: a friend request to a Tox ID; the message is hex (it may hold spaces).
         * With no message toxcore is still asked, so its own NO_MESSAGE error comes back. */
        if (argc == 2) argv[argc++] = (char *)"";
        NEED_ARGS(2);
        uint8_t address[TOX_ADDRESS_SIZE];
        if (from_hex(argv[1], address, sizeof address) != TOX_ADDRESS_SIZE) {
            out("error request bad_address");
            return true;
        }
        long len;
        NEED_HEX(2, len, sizeof g_buf);
        Tox_Err_Friend_Add err;
        const uint32_t n = tox_friend_add(tox, address, g_buf, (size_t)len, &err);
        if (err != TOX_ERR_FRIEND_ADD_OK) {
            out("error request %s", err_friend_add_name(err));
        } else {
            stats_for(n);
            uint8_t pk[TOX_PUBLIC_KEY_SIZE];
            tox_friend_get_public_key(tox, n, pk, NULL);
            char *hex = to_hex(pk, sizeof pk);
            out("ok request %" PRIu32 " %s", n, hex);
            free(hex);
        }
    } else if (strcmp(cmd, "accept") == 0) {
        /* Unlike `add`, only a key that asked us: a test that accepts before the request
         * arrived would otherwise pass without any request having been delivered. */
        NEED_ARGS(1);
        long len;
        NEED_HEX(1, len, sizeof g_buf);
        if (len != TOX_PUBLIC_KEY_SIZE) {
            out("error accept bad_key_length");
            return true;
        }
        const long i = pending_find(g_buf);
        if (i < 0) {
            out("error accept no_request");
            return true;
        }
        Tox_Err_Friend_Add err;
        const uint32_t n = tox_friend_add_norequest(tox, g_buf, &err);
        if (err != TOX_ERR_FRIEND_ADD_OK) {
            out("error accept %s", err_friend_add_name(err));
        } else {
            memmove(g_pending[i], g_pending[i + 1],
                    (g_pending_len - (size_t)i - 1) * TOX_PUBLIC_KEY_SIZE);
            --g_pending_len;
            stats_for(n);
            out("ok accept %" PRIu32, n);
        }
    } else if (strcmp(cmd, "send") == 0) {
        NEED_ARGS(3);
        uint32_t n;
        NEED_U32(1, n);
        Tox_Message_Type type;
        if (strcmp(argv[2], "normal") == 0) {
            type = TOX_MESSAGE_TYPE_NORMAL;
        } else if (strcmp(argv[2], "action") == 0) {
            type = TOX_MESSAGE_TYPE_ACTION;
        } else {
            out("error send bad_type");
            return true;
        }
        long len;
        NEED_HEX(3, len, sizeof g_buf);
        Tox_Err_Friend_Send_Message err;
        const uint32_t id = tox_friend_send_message(tox, n, type, g_buf, (size_t)len, &err);
        if (err != TOX_ERR_FRIEND_SEND_MESSAGE_OK) {
            out("error send %s", err_send_message_name(err));
        } else {
            out("ok send %" PRIu32, id);
        }
    } else if (strcmp(cmd, "name") == 0 || strcmp(cmd, "status_message") == 0) {
        if (argc == 1) argv[argc++] = (char *)""; /* empty value */
        NEED_ARGS(1);
        long len;
        NEED_HEX(1, len, sizeof g_buf);
        Tox_Err_Set_Info err;
        if (cmd[0] == 'n') {
            tox_self_set_name(tox, g_buf, (size_t)len, &err);
        } else {
            tox_self_set_status_message(tox, g_buf, (size_t)len, &err);
        }
        if (err != TOX_ERR_SET_INFO_OK) {
            out("error %s %s", cmd, err_set_info_name(err));
        } else {
            out("ok %s", cmd);
        }
    } else if (strcmp(cmd, "user_status") == 0) {
        NEED_ARGS(1);
        uint32_t st;
        NEED_U32(1, st);
        if (st > 2) {
            out("error user_status bad_status");
            return true;
        }
        tox_self_set_status(tox, (Tox_User_Status)st);
        out("ok user_status");
    } else if (strcmp(cmd, "typing") == 0) {
        NEED_ARGS(2);
        uint32_t n, on;
        NEED_U32(1, n);
        NEED_U32(2, on);
        Tox_Err_Set_Typing err;
        tox_self_set_typing(tox, n, on != 0, &err);
        if (err != TOX_ERR_SET_TYPING_OK) {
            out("error typing %s", err_set_typing_name(err));
        } else {
            out("ok typing");
        }
    } else if (strcmp(cmd, "lossless") == 0 || strcmp(cmd, "lossy") == 0) {
        NEED_ARGS(2);
        uint32_t n;
        NEED_U32(1, n);
        long len;
        NEED_HEX(2, len, sizeof g_buf);
        Tox_Err_Friend_Custom_Packet err;
        if (cmd[4] == 'l') {
            tox_friend_send_lossless_packet(tox, n, g_buf, (size_t)len, &err);
        } else {
            tox_friend_send_lossy_packet(tox, n, g_buf, (size_t)len, &err);
        }
        if (err != TOX_ERR_FRIEND_CUSTOM_PACKET_OK) {
            out("error %s %s", cmd, err_custom_packet_name(err));
        } else {
            out("ok %s", cmd);
        }
    } else if (strcmp(cmd, "burst") == 0) {
        NEED_ARGS(4);
        uint32_t n, count, size, id;
        NEED_U32(1, n);
        NEED_U32(2, count);
        NEED_U32(3, size);
        NEED_U32(4, id);
        cmd_burst(tox, n, count, size, id);
    } else if (strcmp(cmd, "stats") == 0) {
        NEED_ARGS(1);
        uint32_t n;
        NEED_U32(1, n);
        const Friend_Stats *s = stats_for(n);
        if (s == NULL) {
            out("error stats bad_friend");
            return true;
        }
        out("stats %" PRIu32 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %.3f %.3f %" PRIu64 " %" PRIu64
            " %" PRIu64 " %" PRIu32,
            n, s->received, s->in_order, s->out_of_order, s->first_ms, s->last_ms, s->duplicates,
            s->gaps, s->short_packets, s->send_seq);
    } else if (strcmp(cmd, "verbose") == 0) {
        NEED_ARGS(1);
        uint32_t v;
        NEED_U32(1, v);
        g_verbose = v != 0;
        out("ok verbose %d", g_verbose ? 1 : 0);
    } else if (strcmp(cmd, "dht_id") == 0) {
        NEED_ARGS(0);
        print_dht_id(tox, "ok dht_id ");
    } else if (strcmp(cmd, "ping") == 0) {
        out("ok ping %.3f", now_ms());
    } else {
        out("error %s unknown_command", cmd);
    }
    return true;
#undef NEED_ARGS
#undef NEED_U32
#undef NEED_HEX
}

/* ------------------------------------------------------------------------------------------ */
/* main */

typedef struct {
    char host[256];
    uint16_t port;
    uint8_t pk[TOX_PUBLIC_KEY_SIZE];
} Relay;

static bool parse_relay(const char *arg, Relay *r)
{
    /* HOST:PORT:PUBKEY, split from the right */
    const char *c2 = strrchr(arg, ':');
    if (c2 == NULL || c2 == arg) return false;
    const char *c1 = c2 - 1;
    while (c1 > arg && *c1 != ':') --c1;
    if (*c1 != ':' || c1 == arg) return false;
    const size_t host_len = (size_t)(c1 - arg);
    if (host_len >= sizeof r->host) return false;
    memcpy(r->host, arg, host_len);
    r->host[host_len] = '\0';
    char port_str[16];
    const size_t port_len = (size_t)(c2 - c1 - 1);
    if (port_len == 0 || port_len >= sizeof port_str) return false;
    memcpy(port_str, c1 + 1, port_len);
    port_str[port_len] = '\0';
    uint32_t port;
    if (!parse_u32(port_str, &port) || port == 0 || port > 65535) return false;
    r->port = (uint16_t)port;
    return from_hex(c2 + 1, r->pk, sizeof r->pk) == TOX_PUBLIC_KEY_SIZE;
}

static void usage(void)
{
    fprintf(stderr, "usage: tox_peer [--relay HOST:PORT:PUBKEYHEX]... [--name NAME] "
                    "[--no-bootstrap] [--no-tcp-relay] [--log]\n");
}

int main(int argc, char **argv)
{
    clock_gettime(CLOCK_MONOTONIC, &g_start);
    signal(SIGPIPE, SIG_IGN);

    Relay relays[MAX_RELAYS];
    int relay_count = 0;
    const char *name = NULL;
    bool do_bootstrap = true;
    bool do_tcp_relay = true;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--relay") == 0 && i + 1 < argc) {
            if (relay_count == MAX_RELAYS) {
                fprintf(stderr, "too many --relay (max %d)\n", MAX_RELAYS);
                return 2;
            }
            if (!parse_relay(argv[++i], &relays[relay_count])) {
                fprintf(stderr, "bad --relay %s (want HOST:PORT:PUBKEYHEX)\n", argv[i]);
                return 2;
            }
            ++relay_count;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (strcmp(argv[i], "--no-bootstrap") == 0) {
            do_bootstrap = false;
        } else if (strcmp(argv[i], "--no-tcp-relay") == 0) {
            do_tcp_relay = false;
        } else if (strcmp(argv[i], "--log") == 0) {
            g_log = true;
        } else {
            usage();
            return 2;
        }
    }

    Tox_Err_Options_New oerr;
    struct Tox_Options *opts = tox_options_new(&oerr);
    if (opts == NULL) {
        fprintf(stderr, "tox_options_new failed\n");
        return 1;
    }
    tox_options_set_udp_enabled(opts, false);
    tox_options_set_ipv6_enabled(opts, false);
    tox_options_set_local_discovery_enabled(opts, false);
    tox_options_set_hole_punching_enabled(opts, false);
    tox_options_set_savedata_type(opts, TOX_SAVEDATA_TYPE_NONE);
    tox_options_set_tcp_port(opts, 0);
    tox_options_set_log_callback(opts, on_log);

    Tox_Err_New nerr;
    Tox *tox = tox_new(opts, &nerr);
    const double tox_new_ms = now_ms();
    tox_options_free(opts);
    if (tox == NULL) {
        out("error new %s", err_new_name(nerr));
        return 1;
    }

    for (int i = 0; i < relay_count; ++i) {
        Tox_Err_Bootstrap berr;
        if (do_tcp_relay && !tox_add_tcp_relay(tox, relays[i].host, relays[i].port, relays[i].pk,
                                               &berr)) {
            fprintf(stderr, "tox_add_tcp_relay %s:%u: %s\n", relays[i].host, relays[i].port,
                    err_bootstrap_name(berr));
        }
        if (do_bootstrap && !tox_bootstrap(tox, relays[i].host, relays[i].port, relays[i].pk,
                                           &berr)) {
            fprintf(stderr, "tox_bootstrap %s:%u: %s\n", relays[i].host, relays[i].port,
                    err_bootstrap_name(berr));
        }
    }

    if (name != NULL) {
        tox_self_set_name(tox, (const uint8_t *)name, strlen(name), NULL);
    }

    tox_callback_self_connection_status(tox, on_self_connection);
    tox_callback_friend_connection_status(tox, on_friend_connection);
    tox_callback_friend_request(tox, on_friend_request);
    tox_callback_friend_message(tox, on_message);
    tox_callback_friend_read_receipt(tox, on_receipt);
    tox_callback_friend_name(tox, on_name);
    tox_callback_friend_status_message(tox, on_status_message);
    tox_callback_friend_status(tox, on_user_status);
    tox_callback_friend_typing(tox, on_typing);
    tox_callback_friend_lossy_packet(tox, on_lossy);
    tox_callback_friend_lossless_packet(tox, on_lossless);

    {
        uint8_t pk[TOX_PUBLIC_KEY_SIZE];
        uint8_t dht[TOX_PUBLIC_KEY_SIZE];
        uint8_t addr[TOX_ADDRESS_SIZE];
        tox_self_get_public_key(tox, pk);
        tox_self_get_dht_id(tox, dht);
        tox_self_get_address(tox, addr);
        char *a = to_hex(pk, sizeof pk);
        char *b = to_hex(dht, sizeof dht);
        char *c = to_hex(addr, sizeof addr);
        out("ready %s %s %s %.3f", a, b, c, tox_new_ms);
        free(a);
        free(b);
        free(c);
    }

    static char line[LINE_MAX_BYTES + 1];
    size_t line_len = 0;
    bool discarding = false; /* inside an over-long line */
    bool running = true;
    while (running) {
        struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
        const int r = poll(&pfd, 1, (int)tox_iteration_interval(tox));
        if (r < 0 && errno != EINTR) {
            perror("poll");
            break;
        }
        if (r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
            char chunk[16384];
            const ssize_t got = read(STDIN_FILENO, chunk, sizeof chunk);
            if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
                break; /* EOF on stdin: quit */
            }
            for (ssize_t i = 0; i < got && running; ++i) {
                const char ch = chunk[i];
                if (ch == '\n') {
                    if (discarding) {
                        out("error line too_long");
                        discarding = false;
                    } else {
                        line[line_len] = '\0';
                        running = handle_command(tox, line);
                    }
                    line_len = 0;
                } else if (!discarding) {
                    if (line_len == LINE_MAX_BYTES) {
                        discarding = true;
                    } else {
                        line[line_len++] = ch;
                    }
                }
            }
        }
        tox_iterate(tox, NULL);
    }

    tox_kill(tox);
    free(g_stats);
    return 0;
}
