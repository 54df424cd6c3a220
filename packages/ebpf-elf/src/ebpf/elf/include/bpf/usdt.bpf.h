/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* <bpf/usdt.bpf.h>: the header lives one level up. */
#include "../usdt.bpf.h"
