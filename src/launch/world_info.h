// The world info as DeepSpeed passes it between nodes: URL-safe base64 of the JSON object
// {"worker-0": [0, 1], "worker-1": [0, 1]} (hosts in node-rank order, each with its slots).
#pragma once

#include <string>
#include <string_view>

#include "launch/resources.h"

namespace zerotrain::detail {

// URL-safe base64 (RFC 4648 section 5) with '=' padding, as Python's base64.urlsafe_b64encode.
std::string base64url_encode(std::string_view bytes);

// The inverse of base64url_encode; a LaunchError naming `what` on a character or length it cannot have.
std::string base64url_decode(std::string_view text, std::string_view what);

std::string encode_world_info(const WorldInfo& world);

// Decodes --world_info (DeepSpeed's launch.py accepts the same string); errors name the flag and the problem.
WorldInfo decode_world_info(std::string_view encoded);

}  // namespace zerotrain::detail
