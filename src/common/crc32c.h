/* crc32c.h -- CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected), the
 * checksum of every write-ahead log record and segment header.
 *
 * Debian 12 packages no C library for CRC-32C, so it is here: the SSE4.2
 * crc32 instruction when the CPU has it, else a slicing-by-8 table.
 * crc32c("123456789") == 0xE3069283.
 */
#ifndef DK_CRC32C_H
#define DK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes at p. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);
/* The same without the CPU instruction (for tests and other CPUs). */
uint32_t crc32c_portable(uint32_t crc, const void *p, size_t n);

#endif
