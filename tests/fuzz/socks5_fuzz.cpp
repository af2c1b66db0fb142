// libFuzzer target: SOCKS5 state machine fed random bytes in random splits.
// The first 8 bytes seed the configuration (auth mode, verdict) and the split sizes.
// Checks, besides "no crash, no sanitizer report": feeding the stream whole and in pieces
// gives byte-identical replies, the same events, request and pipelined bytes.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/destination/destination_acl.hpp"
#include "server/forward/socks5.hpp"
#include "tests/fuzz/fuzz_split.hpp"

using namespace halfpipe::forward;
using status = socks5_result::status;

namespace {

struct transcript {
    std::string replies;
    std::vector<status> events;
    std::string error;
    std::vector<std::string> credentials;
    std::optional<socks5_request> request;
    std::string pipelined;
};

transcript run(socks5_options options, bool accept, std::string_view input, halfpipe::fuzz::splitter* split) {
    socks5_session s(options);
    transcript t;
    auto handle = [&](socks5_result r) {
        while (true) {
            t.replies += r.reply;
            if (r.state == status::need_more) return;
            t.events.push_back(r.state);
            switch (r.state) {
                case status::authenticate:
                    FUZZ_CHECK(r.username.size() <= 255 && r.password.size() <= 255);
                    t.credentials.push_back(r.username);
                    t.credentials.push_back(r.password);
                    r = s.auth_verdict(accept);
                    continue;
                case status::failed:
                    FUZZ_CHECK(!r.error.empty());
                    t.error = r.error;
                    return;
                case status::request:
                    t.request = s.request();
                    return;
                case status::need_more: return;
            }
        }
    };
    std::size_t pos = 0;
    while (pos < input.size() && s.current_phase() != socks5_session::phase::failed) {
        const std::size_t n = split ? std::min(split->next(), input.size() - pos) : input.size();
        handle(s.feed(input.substr(pos, n)));
        pos += n;
    }
    if (s.current_phase() == socks5_session::phase::failed) {
        const auto again = s.feed("x");
        FUZZ_CHECK(again.state == status::failed && again.reply.empty() && again.error == t.error);
    }
    t.pipelined = std::string(s.pipelined());
    return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    halfpipe::fuzz::splitter split(data, size);
    const std::uint64_t cfg = split.step();
    const socks5_options options{(cfg & 1) ? socks5_auth::username_password : socks5_auth::none};
    const bool accept = (cfg & 2) != 0;
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    const transcript whole = run(options, accept, input, nullptr);
    const transcript parts = run(options, accept, input, &split);

    FUZZ_CHECK(whole.replies == parts.replies);
    FUZZ_CHECK(whole.events == parts.events);
    FUZZ_CHECK(whole.error == parts.error);
    FUZZ_CHECK(whole.credentials == parts.credentials);
    FUZZ_CHECK(whole.request.has_value() == parts.request.has_value());
    FUZZ_CHECK(whole.pipelined == parts.pipelined);
    FUZZ_CHECK(input.ends_with(whole.pipelined));
    FUZZ_CHECK(whole.events.size() <= 2);
    if (!whole.replies.empty()) FUZZ_CHECK(whole.replies[0] == 0x05);

    if (whole.request) {
        const auto& a = whole.request->target;
        const auto& b = parts.request->target;
        FUZZ_CHECK(a == b && whole.request->address_type == parts.request->address_type);
        FUZZ_CHECK(whole.error.empty());
        if (a.kind == host_kind::name) FUZZ_CHECK(is_valid_host_name(a.host));
        else FUZZ_CHECK(ip_address::parse(a.host).has_value());
        // What the relay would do next.
        const auto acl = destination_acl::loopback_only();
        const auto d = acl.check_name(a.host, a.port);
        if (!d.allowed) FUZZ_CHECK(socks5_reply_bytes(socks5_reply_for(connect_failure::denied)).size() == 10);
        else FUZZ_CHECK(socks5_reply_bytes(socks5_reply::succeeded, a.address, a.port).size() == (a.address.v6 ? 22u : 10u));
    }
    return 0;
}
