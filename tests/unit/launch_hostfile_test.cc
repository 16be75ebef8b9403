// Hostfile parsing (every error) and the world info encoding that carries the selection to other nodes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "launch_test_util.h"
#include "launch/error.h"
#include "launch/hostfile.h"
#include "launch/world_info.h"

namespace zerotrain::detail {
namespace {

TEST(Hostfile, ParsesDeepSpeedsGoodExample) {
  // DeepSpeed's tests/unit/launcher/test_run.py::test_hostfile_good.
  const auto pool = parse_hostfile(R"(
    worker-1 slots=2
    worker-2 slots=2

    localhost slots=1
    123.23.12.10 slots=2

    #worker-1 slots=3
    # this is a comment

    )",
                                   "h");
  const ResourcePool want = {{"worker-1", 2}, {"worker-2", 2}, {"localhost", 1}, {"123.23.12.10", 2}};
  EXPECT_EQ(pool, want);
}

TEST(Hostfile, AcceptsTrailingCommentsTabsCrlfAndMaxSlots) {
  const auto pool = parse_hostfile("a\tslots=4   # big box\r\nb slots=1 max_slots=8\r\nc#1 slots=3\n", "h");
  const ResourcePool want = {{"a", 4}, {"b", 1}, {"c#1", 3}};
  EXPECT_EQ(pool, want);
}

TEST(Hostfile, KeepsLineOrder) {
  const auto pool = parse_hostfile("z slots=1\na slots=2\nm slots=3", "h");
  ASSERT_EQ(pool.size(), 3u);
  EXPECT_EQ(pool[0].host, "z");
  EXPECT_EQ(pool[1].host, "a");
  EXPECT_EQ(pool[2].host, "m");
}

TEST(Hostfile, BadSlotValuesNameFileLineAndValue) {
  EXPECT_EQ(error_of([] { parse_hostfile("worker-0 slots=1\n\nworker-1 slots=abc\n", "/x"); }),
            "hostfile /x:3: 'worker-1 slots=abc': slots must be a positive integer, not 'abc'");
  EXPECT_EQ(error_of([] { parse_hostfile("w slots=0", "/x"); }),
            "hostfile /x:1: 'w slots=0': slots must be a positive integer, not '0'");
  EXPECT_EQ(error_of([] { parse_hostfile("w slots=-2", "/x"); }),
            "hostfile /x:1: 'w slots=-2': slots must be a positive integer, not '-2'");
  EXPECT_EQ(error_of([] { parse_hostfile("w slots=4x", "/x"); }),
            "hostfile /x:1: 'w slots=4x': slots must be a positive integer, not '4x'");
  EXPECT_EQ(error_of([] { parse_hostfile("w slots=", "/x"); }),
            "hostfile /x:1: 'w slots=': slots must be a positive integer, not ''");
  EXPECT_EQ(error_of([] { parse_hostfile("w slots=1 max_slots=many", "/x"); }),
            "hostfile /x:1: 'w slots=1 max_slots=many': max_slots must be a positive integer, not 'many'");
}

TEST(Hostfile, MalformedLines) {
  EXPECT_EQ(error_of([] { parse_hostfile("worker-0", "/x"); }),
            "hostfile /x:1: 'worker-0': missing slots=N; a line is 'HOST slots=N'");
  EXPECT_EQ(error_of([] { parse_hostfile("worker-0 slots=2 slots=3", "/x"); }),
            "hostfile /x:1: 'worker-0 slots=2 slots=3': slots= is given twice");
  EXPECT_EQ(error_of([] { parse_hostfile("worker-0 slots=2 gpus=3", "/x"); }),
            "hostfile /x:1: 'worker-0 slots=2 gpus=3': unexpected 'gpus=3'; a line is 'HOST slots=N'");
  EXPECT_EQ(error_of([] { parse_hostfile("worker-0 slots 2", "/x"); }),
            "hostfile /x:1: 'worker-0 slots 2': unexpected 'slots'; a line is 'HOST slots=N'");
  EXPECT_EQ(error_of([] { parse_hostfile("slots=2 worker-0", "/x"); }),
            "hostfile /x:1: 'slots=2 worker-0': 'slots=2' is not a host name (it may not contain '=', '@', ',' or "
            "':'); a line is 'HOST slots=N'");
  EXPECT_EQ(error_of([] { parse_hostfile("a@b slots=1", "/x"); }).substr(0, 45),
            "hostfile /x:1: 'a@b slots=1': 'a@b' is not a ");
  EXPECT_NE(error_of([] { parse_hostfile("a,b slots=1", "/x"); }), "");
  EXPECT_NE(error_of([] { parse_hostfile("fe80::1 slots=1", "/x"); }), "");
}

TEST(Hostfile, DuplicateHostNamesBothLines) {
  // DeepSpeed's test_hostfiles_bad.
  EXPECT_EQ(error_of([] { parse_hostfile("\nworker-1 slots=2\nworker-2 slots=1\nworker-1 slots=1\n", "/x"); }),
            "hostfile /x:4: 'worker-1 slots=1': host 'worker-1' is already listed on line 2; each host may appear "
            "once");
}

TEST(Hostfile, EmptyOrOnlyCommentsIsAnError) {
  EXPECT_EQ(error_of([] { parse_hostfile("", "/x"); }), "hostfile /x: lists no hosts; each line is 'HOST slots=N'");
  EXPECT_EQ(error_of([] { parse_hostfile("# a\n\n   \n#b slots=1\n", "/x"); }),
            "hostfile /x: lists no hosts; each line is 'HOST slots=N'");
}

TEST(Hostfile, ReadMissingFileIsNullopt) {
  EXPECT_FALSE(read_hostfile("/nonexistent/zerotrain/hostfile").has_value());
}

TEST(Hostfile, ReadFileAndUnreadablePaths) {
  char dir_template[] = "/tmp/zt-hostfile-XXXXXX";
  const std::string dir = ::mkdtemp(dir_template);
  const std::string path = dir + "/hostfile";
  std::ofstream(path) << "node-a slots=2\nnode-b slots=3\n";
  const auto pool = read_hostfile(path);
  ASSERT_TRUE(pool.has_value());
  EXPECT_EQ(*pool, (ResourcePool{{"node-a", 2}, {"node-b", 3}}));
  // A directory is not a hostfile: the error names the path and the reason.
  const std::string msg = error_of([&] { read_hostfile(dir); });
  EXPECT_NE(msg.find("hostfile " + dir + ": cannot read it: Is a directory"), std::string::npos) << msg;
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(WorldInfo, Base64MatchesPython) {
  EXPECT_EQ(base64url_encode("\xfb\xff\xfe"), "-__-");
  EXPECT_EQ(base64url_encode("ab"), "YWI=");
  EXPECT_EQ(base64url_encode("a"), "YQ==");
  EXPECT_EQ(base64url_encode(""), "");
  EXPECT_EQ(base64url_decode("-__-", "x"), "\xfb\xff\xfe");
  EXPECT_EQ(base64url_decode("YWI=", "x"), "ab");
  EXPECT_EQ(base64url_decode("YQ==", "x"), "a");
}

TEST(WorldInfo, Base64Errors) {
  EXPECT_EQ(error_of([] { base64url_decode("YWI", "--world_info"); }),
            "--world_info: length 3 is not a multiple of 4, so it is not base64");
  EXPECT_EQ(error_of([] { base64url_decode("YW+=", "--world_info"); }),
            "--world_info: character '+' at offset 2 is not URL-safe base64");
  EXPECT_EQ(error_of([] { base64url_decode("Y=I=", "--world_info"); }),
            "--world_info: character '=' at offset 1 is not URL-safe base64");
  EXPECT_EQ(error_of([] { base64url_decode("YQ==YQ==", "--world_info"); }),
            "--world_info: character '=' at offset 2 is not URL-safe base64");
}

TEST(WorldInfo, RoundTripKeepsNodeOrder) {
  const WorldInfo world = {{"zeta", {0, 1}}, {"alpha", {1, 3}}};
  EXPECT_EQ(decode_world_info(encode_world_info(world)), world);
}

TEST(WorldInfo, DecodesWhatDeepSpeedsRunnerEncodes) {
  // base64.urlsafe_b64encode(json.dumps({"worker-0": [0, 1], "worker-1": [2]}).encode()), as runner.py does.
  const WorldInfo want = {{"worker-0", {0, 1}}, {"worker-1", {2}}};
  EXPECT_EQ(decode_world_info("eyJ3b3JrZXItMCI6IFswLCAxXSwgIndvcmtlci0xIjogWzJdfQ=="), want);
}

TEST(WorldInfo, DecodeErrorsSayWhatIsWrong) {
  const auto decode_text = [](const std::string& json) { return decode_world_info(base64url_encode(json)); };
  EXPECT_EQ(error_of([&] { decode_text("[1]"); }),
            "--world_info decodes to '[1]': not a non-empty object; expected a JSON object {\"HOST\": [SLOT, ...], "
            "...}");
  EXPECT_NE(error_of([&] { decode_text("{}"); }).find("not a non-empty object"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_text("{nope"); }).find("not JSON"), std::string::npos);
  EXPECT_NE(error_of([&] { decode_text(R"({"a": []})"); }).find("the slots of a are not a non-empty list"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_text(R"({"a": [0, -1]})"); }).find("slot -1 of a is not a non-negative integer"),
            std::string::npos);
  EXPECT_NE(error_of([&] { decode_text(R"({"a": ["0"]})"); }).find("slot \"0\" of a"), std::string::npos);
}

}  // namespace
}  // namespace zerotrain::detail
