#pragma once
/// Umbrella header: everything except optional adaptors.

#include "config.hpp"
#include "default.hpp"
#include "errors.hpp"
#include "guard.hpp"
#include "handle.hpp"
#include "kernel.hpp"
#include "op.hpp"
#include "ops.hpp"
#include "owned.hpp"
#include "queue/mpsc_ring.hpp"
#include "reply/future.hpp"
#include "scheduler.hpp"
#include "spawn.hpp"
#include "submit_result.hpp"
#include "wait/eventfd.hpp"
