// `zerotrain launch`: from flags to running processes. plan_launch decides everything (which nodes and slots,
// which runner, every command line and environment) without side effects; run_plan carries a plan out.
#pragma once

#include "launch/context.h"
#include "launch/options.h"
#include "launch/runner.h"

namespace zerotrain::detail {

// Plans the launch, following DeepSpeed's runner:
//  - --world_info (a node agent, or DeepSpeed's launch.py usage) fixes the world; else the hostfile's hosts
//    filtered by --include/--exclude, then --num_nodes/--num_gpus. Without a hostfile the pool is this
//    machine: its GPUs, or (no GPUs) --num_gpus CPU ranks, default 1; CUDA_VISIBLE_DEVICES then becomes
//    --include localhost:<ids> unless a resource flag is given.
//  - --from_launcher: plan.runner is empty and plan.processes holds the one rank to exec.
//  - --no_ssh (or --world_info): the local runner for node --node_rank / --node_name.
//  - --launcher openmpi|mpich|slurm: that runner, for any number of nodes.
//  - more than one node, or --force_multi: --launcher pdsh|ssh (default ssh).
//  - else the local runner for the one node.
LaunchPlan plan_launch(const LaunchOptions& opts, const LaunchContext& ctx);

// Runs a plan: writes its files and pid file, creates the log directory, prints the notes, supervises the
// processes, removes the files; returns the exit code (see supervise). A plan without runner execs its rank
// (replacing this process) and returns only by throwing.
int run_plan(const LaunchPlan& plan);

// plan_launch + run_plan in the current context.
int launch(const LaunchOptions& opts);

}  // namespace zerotrain::detail
