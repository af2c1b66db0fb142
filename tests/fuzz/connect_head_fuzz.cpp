// libFuzzer target: CONNECT head parser fed random bytes in random splits.
// The first 8 bytes seed the header limit and the split sizes; the rest is the stream.
// Checks, besides "no crash, no sanitizer report": the same stream fed whole and in pieces
// agrees on whether a head was found and, if so, on the head and the pipelined bytes; the
// consumed counts add up; errors carry one of the documented statuses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/forward/connect_request.hpp"
#include "common/destination/destination_acl.hpp"
#include "tests/fuzz/fuzz_split.hpp"

using namespace halfpipe::forward;
using status = connect_parse_result::status;

namespace {

bool valid_error_status(int s) { return s == 400 || s == 405 || s == 431 || s == 505; }

bool same_head(const connect_head& a, const connect_head& b) {
    return a.target == b.target && a.version == b.version && a.proxy_authorization == b.proxy_authorization &&
           a.size == b.size;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    halfpipe::fuzz::splitter split(data, size);
    const std::uint64_t cfg = split.step();
    const std::size_t limit = (cfg & 1) ? connect_head_parser::default_header_limit : 16 + (cfg >> 8) % 512;
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    connect_head_parser whole(limit);
    const auto rw = whole.feed(input);
    FUZZ_CHECK(rw.consumed <= input.size());
    if (rw.state == status::need_more) FUZZ_CHECK(rw.consumed == input.size());
    if (rw.state == status::error) FUZZ_CHECK(rw.consumed == 0 && valid_error_status(rw.http_status));

    connect_head_parser parts(limit);
    connect_parse_result rp;
    std::size_t pos = 0;
    std::size_t head_bytes = 0;
    std::string_view pipelined;
    while (true) {
        const std::size_t n = std::min(split.next(), input.size() - pos);
        const auto piece = input.substr(pos, n);
        rp = parts.feed(piece);
        FUZZ_CHECK(rp.consumed <= piece.size());
        if (rp.state == status::need_more) {
            FUZZ_CHECK(rp.consumed == piece.size());
            head_bytes += n;
        } else if (rp.state == status::done) {
            head_bytes += rp.consumed;
            pipelined = input.substr(pos + rp.consumed);
            break;
        } else {
            FUZZ_CHECK(rp.consumed == 0 && valid_error_status(rp.http_status));
            FUZZ_CHECK(!rp.detail.empty());
            break;
        }
        pos += n;
        if (pos == input.size()) break;
    }
    // A finished parser stays finished.
    if (rp.state != status::need_more) {
        const auto again = parts.feed(input.substr(0, 3));
        FUZZ_CHECK(again.state == rp.state && again.consumed == 0 && again.http_status == rp.http_status);
    }

    // Whole and split agree on finding a head (the status of an error may differ: a split
    // stream can run into the size limit before Beast looks at a malformed line).
    FUZZ_CHECK((rw.state == status::done) == (rp.state == status::done));
    if (rw.state == status::done) {
        const auto& h = whole.head();
        FUZZ_CHECK(same_head(h, parts.head()));
        FUZZ_CHECK(h.size == rw.consumed && h.size == head_bytes && h.size <= limit);
        FUZZ_CHECK(input.substr(rw.consumed) == pipelined);
        FUZZ_CHECK(h.version == 10 || h.version == 11);
        FUZZ_CHECK(h.target.port != 0);
        const auto t = make_target(h.target.host, h.target.port);
        FUZZ_CHECK(t && *t == h.target);
        if (h.proxy_authorization) (void)decode_basic_credentials(*h.proxy_authorization);
        const auto acl = destination_acl::loopback_only();
        const auto d = acl.check_name(h.target.host, h.target.port);
        if (h.target.kind != host_kind::name) {
            FUZZ_CHECK(!d.provisional);
            const auto a = acl.check_address(h.target.address.bytes, h.target.address.v6, h.target.port);
            FUZZ_CHECK(a.allowed == d.allowed && a.rule == d.rule);
        }
    } else if (rw.state == status::error) {
        FUZZ_CHECK(!error_response(rw.http_status).empty());
    }

    // The credential decoder on its own, on the raw stream.
    (void)decode_basic_credentials(input);
    return 0;
}
