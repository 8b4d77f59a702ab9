/* beanstalk.h -- beanstalkd 1.13 text protocol: incremental parser and reply writer.
 *
 * Owns: the per-connection framing state (line, put body, discard and skip
 * modes). It never does I/O, never sees the engine and never allocates: the
 * caller keeps the input bytes in its own buffer and hands the unconsumed part
 * to bs_parse() again and again.
 *
 * Framing, as beanstalkd 1.13 does it (docs/protocol.md has the details):
 * - A line ends only at "\r\n" and is at most BS_LINE_MAX bytes counting the
 *   "\r\n". Like beanstalkd's scan_line_end(), only the line's first '\r'
 *   counts: if the byte after it is not '\n', the line can only become too
 *   long. A longer line is discarded up to the next "\r\n" and answered
 *   BAD_FORMAT; parsing then carries on with the next line. The discard runs
 *   in beanstalkd's 224-byte windows (a "\r\n" split across two windows, or
 *   one after a lone '\r' in the same window, is not seen).
 * - put's body is <bytes> bytes followed by "\r\n"; other two bytes give
 *   EXPECTED_CRLF. A body larger than the limit is skipped (bytes+2) and
 *   answered JOB_TOO_BIG. After a put line answered BAD_FORMAT the body is
 *   parsed as commands, as beanstalkd does.
 * The results never depend on how the input is split across bs_parse() calls.
 * Invariant: the parser never needs more than BS_LINE_MAX bytes buffered to
 * make progress on a line, and never more than BS_LINE_MAX + max_job_size + 2
 * for a put; it never reads past the len it is given.
 */
#ifndef DK_BEANSTALK_H
#define DK_BEANSTALK_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/cmd.h"

#define BS_LINE_MAX 224        /* bytes, including "\r\n" (beanstalkd LINE_BUF_SIZE) */
#define BS_NAME_MAX 200        /* bytes in a tube name */

enum bs_status {
    BS_MORE = 0,               /* need more input; *used bytes were consumed anyway */
    BS_CMD = 1,                /* *out holds a command */
    BS_ERR = 2                 /* *err holds the error reply (BAD_FORMAT, UNKNOWN_COMMAND, ...) */
};

struct bs_parser {
    size_t max_job_size;       /* bytes; larger put bodies get JOB_TOO_BIG */
    int state;                 /* internal: line, body, discard-line, skip-body */
    uint64_t skip;             /* bytes still to throw away in skip-body state */
    size_t line_len;           /* body state: bytes of the put line, incl. "\r\n" */
    struct cmd put;            /* body state: the put being read */
    size_t win;                /* discard state: bytes of the current 224-byte window dropped */
    int win_dead;              /* discard state: the window's first '\r' had no '\n' after it */
};

void bs_parser_init(struct bs_parser *p, size_t max_job_size);

/* Parses at most one command from data[0..len).
 * Returns BS_MORE, BS_CMD or BS_ERR; *used is always set to the bytes consumed,
 * which the caller drops from its buffer only after it is done with *out
 * (out->name and out->body point into data). Call again while it returns
 * BS_CMD or BS_ERR; after BS_MORE, call again when more input has arrived.
 * On BS_ERR, out->op is OP_COUNT, except for the rejected commands that
 * beanstalkd still counts in its cmd-* stats, for engine_count_error(): put
 * answered JOB_TOO_BIG, EXPECTED_CRLF or BAD_FORMAT for text after <bytes>,
 * and pause-tube answered BAD_FORMAT for a name too long or starting with '-'.
 * Numbers: pri, delay, ttr as sent (ttr 0 stays 0); reserve-with-timeout's
 * timeout is beanstalkd's `int timeout = strtol(...)`, i.e. the value
 * truncated to 32 bits (2147483648 -> -2147483648, 4294967297 -> 1; "abc" -> 0);
 * kick's bound is strtoul's unsigned long (`kick -1` = UINT64_MAX). */
enum bs_status bs_parse(struct bs_parser *p, const char *data, size_t len, size_t *used,
                        struct cmd *out, enum rcode *err);

/* True while the parser is in the middle of a put body (the caller must then
 * let its buffer grow to hold the whole body). */
int bs_parser_in_body(const struct bs_parser *p);

/* Appends the exact bytes of reply r to out (nothing for R_NONE and R_CLOSE).
 * Returns 0, or -1 on allocation failure, leaving out as it was. */
int bs_write_reply(struct buf *out, const struct reply *r);

/* The command's name as a client sends it ("reserve-with-timeout"); "unknown" for
 * anything that is not an op. */
const char *bs_op_name(enum op op);

#endif
