// --include/--exclude (DeepSpeed's syntax and its test cases), --num_nodes/--num_gpus, and the core lists of
// --bind_cores_to_rank.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "launch_test_util.h"
#include "launch/cpu_binding.h"
#include "launch/error.h"
#include "launch/resources.h"

namespace zerotrain::detail {
namespace {

const ResourcePool kOneNode = {{"worker-0", 4}};
const ResourcePool kTwoNodes = {{"worker-0", 4}, {"worker-1", 4}};

TEST(NodeSpecs, ParsesHostsAndSlots) {
  const auto specs = parse_node_specs("worker-0@worker-1:0,2@worker-0:3", "--include");
  const std::vector<NodeSpec> want = {{"worker-0", {}}, {"worker-1", {0, 2}}, {"worker-0", {3}}};
  EXPECT_EQ(specs, want);
}

TEST(NodeSpecs, SyntaxErrors) {
  const std::string syntax =
      "; the syntax is HOST[:SLOT[,SLOT...]][@HOST[:SLOT...]...], e.g. worker-0@worker-1:0,2";
  EXPECT_EQ(error_of([] { parse_node_specs("a@@b", "--include"); }), "--include 'a@@b': empty node spec" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a@", "--exclude"); }), "--exclude 'a@': empty node spec" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("@a", "--include"); }), "--include '@a': empty node spec" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs(":1", "--include"); }), "--include ':1': ':1' has no host name" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a:", "--include"); }),
            "--include 'a:': slot '' of a is not a non-negative integer" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a:1,,2", "--include"); }),
            "--include 'a:1,,2': slot '' of a is not a non-negative integer" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a:x", "--include"); }),
            "--include 'a:x': slot 'x' of a is not a non-negative integer" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a:-1", "--include"); }),
            "--include 'a:-1': slot '-1' of a is not a non-negative integer" + syntax);
  EXPECT_EQ(error_of([] { parse_node_specs("a:1:2", "--include"); }),
            "--include 'a:1:2': 'a:1:2' has more than one ':'" + syntax);
}

TEST(SelectResources, NoFilterUsesEverySlot) {
  const WorldInfo want = {{"worker-0", {0, 1, 2, 3}}, {"worker-1", {0, 1, 2, 3}}};
  EXPECT_EQ(select_resources(kTwoNodes, "", ""), want);
}

TEST(SelectResources, DeepSpeedsSingleNodeCases) {
  // DeepSpeed's tests/unit/launcher/test_run.py::test_parser_local.
  EXPECT_EQ(select_resources(kOneNode, "", "worker-0:1"), (WorldInfo{{"worker-0", {0, 2, 3}}}));
  EXPECT_EQ(select_resources(kOneNode, "", "worker-0:1,2"), (WorldInfo{{"worker-0", {0, 3}}}));
  EXPECT_EQ(select_resources(kOneNode, "worker-0:1", ""), (WorldInfo{{"worker-0", {1}}}));
  EXPECT_EQ(select_resources(kOneNode, "worker-0:1,1", ""), (WorldInfo{{"worker-0", {1}}}));
  EXPECT_EQ(select_resources(kOneNode, "worker-0:1@worker-0:0,1", ""), (WorldInfo{{"worker-0", {0, 1}}}));
  // A host without slots means all of them. (DeepSpeed's parse_inclusion_exclusion drops such a host.)
  EXPECT_EQ(select_resources(kOneNode, "worker-0", ""), (WorldInfo{{"worker-0", {0, 1, 2, 3}}}));
}

TEST(SelectResources, DeepSpeedsMultiNodeCases) {
  // DeepSpeed's test_parser_multinode.
  EXPECT_EQ(select_resources(kTwoNodes, "worker-1:0,3", ""), (WorldInfo{{"worker-1", {0, 3}}}));
  EXPECT_EQ(select_resources(kTwoNodes, "", "worker-1"), (WorldInfo{{"worker-0", {0, 1, 2, 3}}}));
  EXPECT_EQ(select_resources(kTwoNodes, "", "worker-0:0,1@worker-1:3"),
            (WorldInfo{{"worker-0", {2, 3}}, {"worker-1", {0, 1, 2}}}));
}

TEST(SelectResources, KeepsHostfileOrderAndSortsSlots) {
  EXPECT_EQ(select_resources(kTwoNodes, "worker-1:3,0@worker-0:2", ""),
            (WorldInfo{{"worker-0", {2}}, {"worker-1", {0, 3}}}));
  EXPECT_EQ(select_resources(kTwoNodes, "worker-1@worker-0:1", ""),
            (WorldInfo{{"worker-0", {1}}, {"worker-1", {0, 1, 2, 3}}}));
}

TEST(SelectResources, Errors) {
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "A", "B"); }),
            "--include 'A' and --exclude 'B': give at most one of them");
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "jeff", ""); }),
            "--include 'jeff': host 'jeff' is not in the hostfile (hosts: worker-0, worker-1)");
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "", "jeff:0"); }),
            "--exclude 'jeff:0': host 'jeff' is not in the hostfile (hosts: worker-0, worker-1)");
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "worker-1:4", ""); }),
            "--include 'worker-1:4': worker-1 has no slot 4; its slots are 0-3 (slots=4)");
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "", "worker-1:4"); }),
            "--exclude 'worker-1:4': worker-1 has no slot 4; its slots are 0-3 (slots=4)");
  // DeepSpeed's test_parser_errors formatting case: '5' reads as a host name.
  EXPECT_EQ(error_of([] { select_resources(kTwoNodes, "", "worker-1@worker-0:1@5"); }),
            "--exclude 'worker-1@worker-0:1@5': host '5' is not in the hostfile (hosts: worker-0, worker-1)");
  // DeepSpeed returns an empty selection here and fails later; zerotrain says so at once.
  EXPECT_EQ(error_of([] { select_resources(kOneNode, "", "worker-0"); }),
            "--exclude 'worker-0': leaves no slots to run on");
  EXPECT_EQ(error_of([] { select_resources(kOneNode, "", "worker-0:0,1,2,3"); }),
            "--exclude 'worker-0:0,1,2,3': leaves no slots to run on");
}

TEST(LimitResources, NumNodesKeepsTheFirstNodes) {
  const auto world = select_resources(kTwoNodes, "", "");
  EXPECT_EQ(limit_resources(world, kTwoNodes, 1, -1), (WorldInfo{{"worker-0", {0, 1, 2, 3}}}));
  EXPECT_EQ(limit_resources(world, kTwoNodes, -1, -1), world);
}

TEST(LimitResources, NumGpusGivesSlotsZeroToN) {
  const auto world = select_resources(kTwoNodes, "", "");
  EXPECT_EQ(limit_resources(world, kTwoNodes, -1, 2), (WorldInfo{{"worker-0", {0, 1}}, {"worker-1", {0, 1}}}));
  EXPECT_EQ(limit_resources(world, kTwoNodes, 1, 3), (WorldInfo{{"worker-0", {0, 1, 2}}}));
}

TEST(LimitResources, Errors) {
  const ResourcePool pool = {{"a", 2}, {"b", 1}};
  const auto world = select_resources(pool, "", "");
  EXPECT_EQ(error_of([&] { limit_resources(world, pool, 3, -1); }), "--num_nodes 3: only 2 nodes are available (a, b)");
  EXPECT_EQ(error_of([&] { limit_resources(world, pool, -1, 2); }), "--num_gpus 2: host b has only 1 slot");
  EXPECT_EQ(error_of([&] { limit_resources(world, pool, -1, 3); }), "--num_gpus 3: host a has only 2 slots");
}

TEST(LimitResources, WorldSizeCountsSlots) {
  EXPECT_EQ(world_size({{"a", {0, 1, 2}}, {"b", {5}}}), 4);
  EXPECT_EQ(world_size({}), 0);
}

TEST(CoreList, ParsesDeepSpeedsSyntax) {
  EXPECT_EQ(parse_core_list("0,2-4,6"), (std::vector<int>{0, 2, 3, 4, 6}));
  EXPECT_EQ(parse_core_list("7"), (std::vector<int>{7}));
  EXPECT_EQ(parse_core_list("1-1,3-4"), (std::vector<int>{1, 3, 4}));
}

TEST(CoreList, Errors) {
  const std::string syntax = "; the syntax is N or N-M, comma-separated, e.g. 0,2-4,6";
  EXPECT_EQ(error_of([] { parse_core_list("a"); }), "--bind_core_list 'a': 'a' is not a core number" + syntax);
  EXPECT_EQ(error_of([] { parse_core_list("1,,2"); }), "--bind_core_list '1,,2': '' is not a core number" + syntax);
  EXPECT_EQ(error_of([] { parse_core_list("1-"); }), "--bind_core_list '1-': '' is not a core number" + syntax);
  EXPECT_EQ(error_of([] { parse_core_list("4-2"); }), "--bind_core_list '4-2': range '4-2' ends before it starts");
  EXPECT_EQ(error_of([] { parse_core_list("0-3,2"); }),
            "--bind_core_list '0-3,2': '2' overlaps or precedes the cores before it; list ranges in ascending order");
}

TEST(CoreList, SplitsCoresEvenlyAcrossRanks) {
  const std::vector<int> cores = {0, 1, 2, 3, 4, 5, 6};
  EXPECT_EQ(cores_for_rank(cores, 3, 0), (std::vector<int>{0, 1}));
  EXPECT_EQ(cores_for_rank(cores, 3, 2), (std::vector<int>{4, 5}));  // core 6 stays unused, as in DeepSpeed
  EXPECT_EQ(cores_for_rank(cores, 1, 0), cores);
  EXPECT_EQ(error_of([&] { cores_for_rank({0, 1}, 3, 0); }),
            "--bind_cores_to_rank: 3 ranks on this node but only 2 cores to bind them to");
}

TEST(CoreList, AllowedCpusIsNotEmpty) {
  const auto cpus = allowed_cpus();
  ASSERT_FALSE(cpus.empty());
  EXPECT_TRUE(std::is_sorted(cpus.begin(), cpus.end()));
}

}  // namespace
}  // namespace zerotrain::detail
