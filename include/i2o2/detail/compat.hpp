#pragma once
/// What liburing 2.3 (Debian bookworm) does not define yet.
///
/// Opcodes are plain numbers in our own namespace, so a newer liburing that
/// defines them as enumerators still builds; flag macros are guarded.
/// This header includes only liburing's copy of the kernel ABI structs,
/// never liburing.h: ops fill SQEs without linking liburing.

#include <linux/time_types.h>  // liburing 2.3's io_uring.h uses __kernel_timespec

#include <liburing/io_uring.h>

#include <cstdint>

namespace i2o2::compat {

// Opcode numbers from the kernel ABI (include/uapi/linux/io_uring.h).
inline constexpr std::uint8_t op_uring_cmd = 46;   // Linux 5.19
inline constexpr std::uint8_t op_msg_ring = 40;    // Linux 5.18
inline constexpr std::uint8_t op_futex_wait = 51;  // Linux 6.7
inline constexpr std::uint8_t op_futex_wake = 52;  // Linux 6.7
inline constexpr std::uint8_t op_ftruncate = 55;   // Linux 6.9
inline constexpr std::uint8_t op_readv_fixed = 60;   // Linux 6.15
inline constexpr std::uint8_t op_writev_fixed = 61;  // Linux 6.15

// io_uring_register opcodes.
inline constexpr unsigned register_enable_rings = 12;   // Linux 5.10
inline constexpr unsigned register_files_update2 = 14;  // Linux 5.13
inline constexpr unsigned register_buffers_update = 16;
inline constexpr unsigned register_send_msg_ring = 31;  // Linux 6.13

// Futex flags for IORING_OP_FUTEX_WAIT (futex2 encoding).
inline constexpr std::uint32_t futex2_size_u32 = 0x02;
inline constexpr std::uint32_t futex2_private = 128;
inline constexpr std::uint64_t futex_bitset_match_any = 0xffffffff;

// Setup flags newer than liburing 2.3.
#ifndef IORING_SETUP_NO_MMAP
inline constexpr std::uint32_t setup_no_mmap = 1U << 14;
#else
inline constexpr std::uint32_t setup_no_mmap = IORING_SETUP_NO_MMAP;
#endif

/// Largest SQ size the kernel accepts (IORING_MAX_ENTRIES).
inline constexpr std::uint32_t max_ring_entries = 32768;

/// Bytes of command payload an SQE128 ring carries for IORING_OP_URING_CMD.
inline constexpr std::size_t uring_cmd_bytes = 80;

}  // namespace i2o2::compat
