#pragma once
/// One message on its way from a client to the scheduler: an op (its SQE
/// image), or a control request the scheduler carries out itself (register
/// or unregister a resource, cancel an op), with the reply's sending half
/// and the guard.

#include "../guard.hpp"
#include "../op.hpp"

#include <cstdint>

namespace i2o2::detail {

enum class envelope_kind : std::uint8_t {
  op,                 // the SQE image goes to the ring
  register_file,      // fd in sqe.fd
  unregister_file,    // table index in `key`
  register_buffer,    // base in sqe.addr, length in sqe.len
  unregister_buffer,  // table index in `key`
  cancel,             // the op whose key is `key`
};

template <class Sender, class Guard>
struct envelope {
  prepared_op op;
  Sender sender;
  [[no_unique_address]] stored_guard_t<Guard> guard;
  /// For ops: the key `cancel` finds it by (0: none). For control requests:
  /// what the kind says.
  std::uint64_t key = 0;
  /// On a chain's first op, the number of ops in the chain; 0 on the ops
  /// that follow it; 1 otherwise.
  std::uint16_t chain_length = 1;
  envelope_kind kind = envelope_kind::op;
};

}  // namespace i2o2::detail
