/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Top-level "bpf_helpers.h" (older ebpf-elf programs): <bpf/bpf_helpers.h> plus the CO-RE macros. */
#include "bpf/bpf_helpers.h"
#include "bpf/bpf_core_read.h"
