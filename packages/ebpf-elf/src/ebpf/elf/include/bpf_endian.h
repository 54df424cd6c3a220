/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Also reachable as "bpf_endian.h": the header lives in bpf/. */
#include "bpf/bpf_endian.h"
