/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Tiny portability shim for the kernel-independent core: maps the few
 * types and helpers the core needs to the kernel's headers when built as
 * part of dattobd.ko, and to the C library when built in userspace (unit
 * tests, node addon).
 */
#ifndef DBD_SHIM_H
#define DBD_SHIM_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/errno.h>
#include <linux/string.h>
#include <linux/kernel.h>
#else
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
#endif

#endif /* DBD_SHIM_H */
