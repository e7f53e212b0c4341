"""Named mutations of the proxy's critical behaviours, and the command that shows the suite
catches every one.

A mutation removes one behaviour with a small textual patch (`old` → `new`, where `old` occurs
exactly once in `file`) and names the tests that must turn red without it. The command copies
the working tree to a temporary directory, applies one mutation there, runs its tests against
the copy (`PYTHONPATH` points at the copy, so subprocesses that start `python -m proxy` run the
mutated code too), and reports whether they failed (caught) or passed (survived):

    python tests/mutations.py                 # every mutation, then a summary; exit 1 on a survivor
    python tests/mutations.py --list          # names and what each removes
    python tests/mutations.py reserve-ignores-in-flight commit-charges-estimate
    python tests/mutations.py --baseline      # also run each mutation's tests unmutated first

A mutation whose `old` text no longer occurs exactly once is reported as stale (and
tests/test_mutations.py fails in the main suite), so the list cannot rot silently when the code
moves. Every issue that adds a critical behaviour adds its mutations here.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOUNDS = (
    "tests/gateway/test_reservation_bounds.py"
    "::test_budget_one_unit_below_the_bill_is_refused_and_the_bill_is_charged"
)
"""The test that the reservation bounds what the (independent) fake provider bills."""
ENDINGS = "tests/gateway/test_endings.py::"
EACH = (
    "tests/gateway/test_billable.py"
    "::test_each_call_is_billed_at_most_what_it_is_charged_at_most_what_it_reserved"
)
"""billed <= charged <= reserved for each priced dimension (add `[memory-<case>]`)."""
REFUSED = (
    "tests/gateway/test_billable.py::"
    "test_a_tier_tool_or_document_the_policy_does_not_price_is_refused"
)
"""What the policy does not price is refused (add `[memory-<case>]`)."""
CHOICES = "tests/gateway/test_choices_and_limits.py"
TIMEOUT = "tests/gateway/test_reserve_timeout.py"
LIFECYCLE = "tests/store/test_lifecycle.py"
MACHINE = "tests/store/test_lifecycle_machine.py"
ACTIONS = "tests/actions/test_actions.py"
POLICY = "tests/policy/test_policy.py::test_broken_policy_names_file_line_and_field"
SWEEPER = "tests/store/test_sweeper.py::"
REPLAY = "tests/gateway/test_replay.py"
ADMIN_INPUTS = "tests/admin/test_admin_inputs.py"
PROVIDER_ERRORS = "tests/gateway/test_provider_errors.py"
STREAM_ERRORS = "tests/gateway/test_stream_errors.py"
BOOKS = "tests/mcp/test_tool_books.py::"
REPORT_FIGURES = "tests/reports/test_report_figures.py"
REPORT_HISTORY = "tests/reports/test_report_history.py"
REPORT_SURFACES = "tests/reports/test_report_surfaces.py"
LOG_LINES = "tests/gateway/test_log_lines.py"
TALLIES = "tests/gateway/test_tallies.py"
WHOLE_200 = "test_an_error_at_the_top_of_a_whole_200_reaches_the_tenant_scrubbed_and_charged"
LISTEN = "tests/processes/test_listen.py::"
ADMIN_BOUNDS = "tests/admin/test_admin_bounds.py"
AT_ONCE = "test_a_body_sent_at_once_and_refused_unread_closes_the_connection_unread"
EXPECT = "test_expect_100_continue_invites_only_a_body_that_will_be_read"
ADMIN_LISTENER = (
    "test_the_admin_listener_cuts_slow_headers_and_slow_bodies_and_refuses_before_reading"
)
ROUTES = "tests/gateway/test_routes_and_faults.py"
FIELDS = "tests/metering/test_request_fields.py"
CONTRACT = "tests/store/test_ledger_contract.py::"
CONTRACT_SUITE = ("tests/store/test_ledger_contract.py",)
EDGES = "tests/store/test_settle_edges.py::"
END_USERS = "tests/gateway/test_end_users.py"
END_USER_IDS = "tests/gateway/test_end_user_ids.py"
END_USER_SCOPES = "tests/budget/test_end_user_scopes.py"
END_USER_EXPIRY = "tests/store/test_end_user_expiry.py"
LEDGER_END_USERS = "tests/store/test_ledger_end_users.py"
MANY_USERS = "tests/store/test_many_end_users.py"
TRACING = "tests/gateway/test_tracing.py"
ADMIN_END_USERS = "tests/admin/test_admin_end_users.py"
FROM_HEADER_ELSE_BODY = "test_the_user_comes_from_the_header_else_the_body_which_goes_up_unchanged"
"""The whole ledger contract, on every store."""
MODELLED = f"{FIELDS}::test_a_modelled_field_is_reserved_for_what_the_provider_bills"
SLOW_WHOLE = (
    ENDINGS + "test_slow_whole_answers_are_not_cut_by_stream_timeouts_and_are_charged_their_usage"
)
STOP_CHARGES_GIVEN_UP = (
    ENDINGS + "test_a_proxy_that_stops_charges_the_calls_it_gives_up_before_closing_the_ledger"
)
REASONING_NO_USAGE = (
    ENDINGS + "test_a_reasoning_model_stream_without_usage_is_charged_its_reservation"
)
REASONING_FLAG = ENDINGS + "test_the_policy_s_reasoning_flag_decides_a_stream_without_usage"
AUTO_TIER = (
    "tests/gateway/test_billable.py"
    "::test_auto_reserves_the_dearest_priced_tier_and_is_charged_the_tier_served"
)
COMMIT_ABOVE_ESTIMATE = CONTRACT + "test_commit_charges_actual_even_above_estimate"
"""A commit on two lines, checked on the book of each (add `[memory]` or `[redis]`)."""
EXACT_FIT = CONTRACT + "test_exact_fit_is_allowed_and_one_more_unit_is_not"
GARBAGE = (
    "tests/gateway/test_fuzz.py::test_upstream_garbage_is_settled_at_exactly_what_the_answer_shows"
)
"""The fuzzed upstream's answers, each charged exactly what it shows (add `[memory]`)."""
FUZZED_CALLS = (
    "tests/gateway/test_fuzz.py"
    "::test_fuzzed_calls_are_charged_what_the_provider_billed_and_refusals_change_nothing"
)
"""Fuzzed calls through the stack, charged at least what the fake billed (add `[memory]`)."""
CACHE = "tests/gateway/test_cache_writes.py::"
CACHE_WRITES = CACHE + "test_cache_writes_are_reserved_at_their_ttl_price_and_charged_as_reported"
ENDS = "tests/gateway/test_answer_endings.py::"
PROPERTY = "tests/gateway/test_cost_fields_property.py"
NESTED = "tests/gateway/test_nested_blocks.py::"
UNEXPLAINED = "test_writes_the_ttl_split_leaves_unexplained_are_charged_at_the_longest_ttl_asked"
CLIENT_TOOLS = "tests/gateway/test_client_tools.py::"
OPENAI_WRITES = "tests/gateway/test_openai_cache_writes.py::"
OPENAI_WRITE_PRICE = (
    OPENAI_WRITES + "test_cache_writes_are_reserved_and_charged_at_the_model_s_write_price"
)
LONG_MEDIA = "tests/gateway/test_long_context_media.py"
MESSAGE_COSTS = "tests/gateway/test_message_field_costs.py::"
MESSAGE_REFUSED = (
    "test_a_message_field_or_item_the_proxy_cannot_price_is_refused_and_changes_nothing"
)
UNREPORTED = "tests/gateway/test_unreported_extras.py::"
IMAGES = "tests/gateway/test_image_rules.py::"
ITEM_IMAGES = "tests/gateway/test_item_images.py::"
ITEM_MEDIA = "tests/metering/test_item_media.py::"
MCP_SESSIONS = "tests/store/test_mcp_sessions.py::"
REQUEST_IDS = "tests/mcp/test_request_ids.py::"
ACTION_AUDIT = "tests/store/test_ledger_action_audit.py"
ROLLUPS = "tests/store/test_rollups.py::"
USAGE = "tests/gateway/test_usage_events.py::"
USAGE_ONCE = "test_a_settle_adds_one_outbox_entry_and_its_repeat_none"
USAGE_EXPIRY = "test_an_expiry_adds_an_entry_from_its_record_when_events_are_on"
USAGE_CALLS = "test_each_call_is_one_signed_cloudevent_whose_costs_sum_to_spent"
SINKS = "tests/gateway/test_usage_sender_sinks.py::"
BACKLOG = "tests/gateway/test_usage_events_backlog.py::"
EVENT_IDS = "tests/gateway/test_usage_event_ids.py::"
OUTBOX = "tests/gateway/test_usage_events_outbox.py::"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    removes: str = ""
    """The behaviour the mutation removes, in a few words (defaults to the name)."""

    @classmethod
    def never(
        cls, name: str, file: str, old: str, tests: tuple[str, ...], removes: str = ""
    ) -> Mutation:
        """The `if` that ends the first line of `old` with its condition never holds."""
        return cls(name, file, old, _condition(old, "False"), tests, removes)

    @classmethod
    def always(
        cls, name: str, file: str, old: str, tests: tuple[str, ...], removes: str = ""
    ) -> Mutation:
        """The `if` that ends the first line of `old` with its condition always holds."""
        return cls(name, file, old, _condition(old, "True"), tests, removes)


def _condition(old: str, value: str) -> str:
    """`old` with the condition of the first `if` that ends a line replaced by `value`."""
    new, found = re.subn(r"\bif [^\n]*:$", f"if {value}:", old, count=1, flags=re.M)
    if not found:
        raise ValueError(f"no `if ...:` ends a line of {old!r}")
    return new


MUTATIONS: tuple[Mutation, ...] = (
    # -- the reservation: atomic, all lines, in-flight calls count ---------------------------
    Mutation(
        name="reserve-ignores-in-flight",
        file="proxy/store/ledger/lua/reserve.lua",
        old="tonumber(f[3] or '0') - tonumber(f[1] or '0') - tonumber(f[2] or '0')",
        new="tonumber(f[3] or '0') - tonumber(f[1] or '0')",
        tests=CONTRACT_SUITE,
        removes="Redis reserve counts calls still in flight against the budget",
    ),
    Mutation(
        name="memory-reserve-ignores-in-flight",
        file="proxy/store/ledger/memory.py",
        old='used = spent + book.get(prefix + "|reserved", 0)',
        new="used = spent",
        tests=CONTRACT_SUITE,
        removes="memory reserve counts calls still in flight against the budget",
    ),
    Mutation(
        name="commit-charges-estimate",
        file="proxy/store/ledger/lua/commit.lua",
        old="settle_lines(r.prefixes, est, act)",
        new="settle_lines(r.prefixes, est, est)",
        tests=CONTRACT_SUITE,
        removes="Redis commit charges what the provider reported, not the estimate",
    ),
    Mutation(
        name="memory-commit-charges-estimate",
        file="proxy/store/ledger/memory.py",
        old="t.settle_lines(r.fields, r.amounts, actual, now, s)",
        new="t.settle_lines(r.fields, r.amounts, r.amounts, now, s)",
        tests=CONTRACT_SUITE,
        removes="memory commit charges what the provider reported, not the estimate",
    ),
    Mutation(
        name="release-keeps-concurrency",
        file="proxy/store/ledger/lua/release.lua",
        old="free_held(r.held)",
        new="",
        tests=("tests/store/test_ledger_quotas.py",),
        removes="Redis release frees the concurrency slots the call held",
    ),
    # -- expiry: a reservation nobody settled is charged, not forgotten -----------------------
    Mutation(
        name="expiry-releases",
        file="proxy/store/ledger/lua/sweep.lua",
        old="settle_lines(r.prefixes, est, charge)",
        new="settle_lines(r.prefixes, est, nil)",
        tests=CONTRACT_SUITE,
        removes="Redis sweeper charges an expired reservation (on_expiry: charge)",
    ),
    Mutation(
        name="memory-expiry-releases",
        file="proxy/store/ledger/sweep_memory.py",
        old='charge = r.amounts if self.settings.on_expiry == "charge" else None',
        new="charge = None",
        tests=CONTRACT_SUITE,
        removes="memory sweeper charges an expired reservation (on_expiry: charge)",
    ),
    # -- what a call is charged -------------------------------------------------------------
    Mutation(
        name="cut-stream-charged-counted-text",
        file="proxy/gateway/settle.py",
        old="return {unit: max(amount, reserved.get(unit, 0)) for unit, amount in counted.items()}",
        new="return counted",
        tests=(
            "tests/gateway/test_routes_and_faults.py",
            "tests/gateway/test_responses_api.py"
            "::test_stream_cut_before_completed_is_charged_at_least_the_reservation",
            "tests/gateway/test_anthropic_api.py"
            "::test_stream_cut_before_message_delta_is_charged_the_reservation",
            f"{GARBAGE}[memory]",
        ),
        removes="a stream cut before its usage report is charged at least the reservation",
    ),
    Mutation(
        name="upstream-error-charged",
        file="proxy/gateway/pipeline.py",
        old="""            await flight.release()
            body = await _read_or_empty(upstream, deadline)""",
        new="""            await flight.settle(Outcome(complete=False))
            body = await _read_or_empty(upstream, deadline)""",
        tests=(
            "tests/gateway/test_accounting.py",
            "tests/gateway/test_routes_and_faults.py",
            f"{GARBAGE}[memory]",
        ),
        removes="an upstream error before any output releases the reservation",
    ),
    Mutation(
        name="n-not-reserved",
        file="proxy/budget/variants.py",
        old="            priced * self.choices,\n",
        new="            priced,\n",
        tests=(BOUNDS,),
        removes="n choices are reserved n times",
    ),
    Mutation(
        name="tokenizer-factor-ignored",
        file="proxy/budget/variants.py",
        old="return ceil_times(text, price.tokenizer_factor) + images",
        new="return text + images",
        tests=("tests/gateway/test_anthropic_api.py", BOUNDS),
        removes="a Claude prompt is scaled by the model's tokenizer_factor",
    ),
    Mutation.never(
        name="hard-bound-not-written",
        file="proxy/budget/variants.py",
        old="""        if limit is None and bound:
            limit = self.plan.default_max_tokens""",
        tests=(
            "tests/gateway/test_accounting.py::test_hard_bound_writes_a_completion_limit",
            "tests/gateway/test_model_rules.py",
        ),
        removes="bound: hard writes a completion limit when the client sent none",
    ),
    # -- endings: delivered means billable; hidden reasoning (issue 13) -----------------------
    Mutation.always(
        name="no-answer-after-sending-released",
        file="proxy/gateway/pipeline.py",
        old="        if not exc.delivered:",
        tests=(
            ENDINGS + "test_a_whole_answer_later_than_non_stream_answer_is_504_and_charged_its_"
            "reservation",
            ENDINGS + "test_a_stream_whose_headers_come_after_first_byte_is_504_and_charged_its_"
            "reservation",
            ENDINGS + "test_a_connection_reset_after_the_request_was_sent_is_charged_its_"
            "reservation",
        ),
        removes="a call whose request was sent and got no answer is charged, not released",
    ),
    Mutation.never(
        name="never-sent-call-charged",
        file="proxy/gateway/pipeline.py",
        old="        if not exc.delivered:",
        tests=(ENDINGS + "test_an_upstream_that_cannot_be_reached_is_502_and_nothing_is_charged",),
        removes="a call that never got a connection is released",
    ),
    Mutation(
        name="whole-answer-waits-first-byte",
        file="proxy/gateway/pipeline.py",
        old='"first_byte" if sent.stream else "non_stream_answer"',
        new='"first_byte"',
        tests=(SLOW_WHOLE,),
        removes="a whole answer is bounded by non_stream_answer, not first_byte",
    ),
    Mutation(
        name="chunk-idle-bounds-the-wait-for-headers",
        file="proxy/gateway/relay.py",
        old="timeout=_client_timeout(timeouts.connect),",
        new=(
            "timeout=aiohttp.ClientTimeout(sock_connect=timeouts.connect, "
            "sock_read=timeouts.chunk_idle),"
        ),
        tests=(SLOW_WHOLE,),
        removes="chunk_idle bounds only the silence between chunks, not the wait for headers",
    ),
    Mutation(
        name="given-up-call-left-open",
        file="proxy/gateway/pipeline.py",
        old="""        await _given_up(flight)
        raise
    flight.answered()""",
        new="""        raise
    flight.answered()""",
        tests=(
            ENDINGS + "test_a_call_the_proxy_gives_up_on_is_charged_its_reservation",
            STOP_CHARGES_GIVEN_UP,
        ),
        removes="a call the proxy gives up on is charged before the ledger closes",
    ),
    Mutation(
        name="stop-waits-on-late-calls",
        file="proxy/gateway/upkeep.py",
        old="""    for task in late:
        task.cancel()""",
        new="""    for task in late:
        pass""",
        tests=(STOP_CHARGES_GIVEN_UP,),
        removes="at shutdown, calls still waiting for their provider are given up and charged",
    ),
    Mutation.never(
        name="answer-timeout-outlives-reservation",
        file="proxy/policy/lifetimes.py",
        old="    if cap <= answer.total:",
        tests=(
            ENDINGS + "test_check_refuses_a_non_stream_answer_the_reservation_would_not_outlive",
            ENDINGS + "test_a_route_s_non_stream_answer_must_fit_the_reservation_too",
        ),
        removes="a policy whose non_stream_answer the reservation would not outlive is refused",
    ),
    Mutation(
        name="hidden-reasoning-charged-counted-text",
        file="proxy/gateway/settle.py",
        old="if outcome.complete and outcome.streamed and not outcome.hidden_reasoning:",
        new="if outcome.complete and outcome.streamed:",
        tests=(
            REASONING_NO_USAGE,
            REASONING_FLAG,
        ),
        removes="a complete stream without usage from a model that may reason: the reservation",
    ),
    Mutation(
        name="o-series-not-reasoning-by-default",
        file="proxy/policy/model_rules.py",
        old="return True if REQUIRES_COMPLETION_FIELD.fullmatch(model) else None",
        new="return None",
        tests=(REASONING_NO_USAGE,),
        removes="the o-series and gpt-5 may reason unless the policy says otherwise",
    ),
    Mutation.never(
        name="reasoning-flag-ignored",
        file="proxy/policy/model_rules.py",
        old="""    if reasoning is not None:
        return reasoning""",
        tests=(REASONING_FLAG,),
        removes="a model's reasoning flag decides what its streams without usage are charged",
    ),
    # -- idempotency ------------------------------------------------------------------------
    Mutation(
        name="idempotency-hash-ignores-body",
        file="proxy/gateway/replay.py",
        old="return hashlib.sha256(head + body).hexdigest()",
        new="return hashlib.sha256(head).hexdigest()",
        tests=("tests/gateway/test_replay.py",),
        removes="a replay answers only the same body under the same key",
    ),
    # -- the boundary -----------------------------------------------------------------------
    Mutation(
        name="fail-closed-forwards",
        file="proxy/gateway/admission.py",
        old='    return policy.fail_mode == "open"',
        new="    return True",
        tests=(
            "tests/processes/test_faults.py::test_redis_restart_fail_closed_forwards_nothing_unreserved",
        ),
        removes="fail_mode: closed answers 503 when the ledger is unreachable",
    ),
    Mutation(
        name="client-headers-all-forwarded",
        file="proxy/gateway/relay.py",
        old="with_credential(allowed(client.items(), REQUEST_HEADERS_UP), api_key, auth)",
        new="with_credential(CIMultiDict(client.items()), api_key, auth)",
        tests=(
            "tests/gateway/test_routes_and_faults.py",
            "tests/gateway/test_gateway.py",
            "tests/gateway/test_anthropic_api.py",
        ),
        removes="only allow-listed client headers go up; client credentials never do",
    ),
    Mutation.never(
        name="dot-segments-allowed",
        file="proxy/gateway/relay.py",
        old='if _decoded(segment, path) in (".", ".."):',
        tests=("tests/gateway/test_routes_and_faults.py", "tests/gateway/test_bad_input.py"),
        removes="paths with dot segments are refused before routing",
    ),
    Mutation.never(
        name="gateway-tenant-header-trusted",
        file="proxy/gateway/identity.py",
        old="""        named = values.setdefault(level, bound)
        if named != bound:""",
        tests=("tests/gateway/test_gateway.py", "tests/store/test_keys.py"),
        removes="a scope header that disagrees with the API key is 403",
    ),
    # -- the tenant boundary and the operator surface (issue 14) ------------------------------
    Mutation(
        name="valid-key-refused-after-others-fail",
        file="proxy/gateway/identity.py",
        old="""    if reason is None and key is not None:
        return key
""",
        new="""    braked = keys.failures.addresses.blocked_for(_client(request, policy))
    if reason is None and key is not None and not braked:
        return key
""",
        tests=(
            "tests/gateway/test_failed_auth.py"
            "::test_two_hundred_failures_from_an_address_never_refuse_a_valid_key_from_it",
        ),
        removes="the key is checked first: others' failures never refuse a valid key",
    ),
    Mutation(
        name="failed-auth-unlimited-per-address",
        file="proxy/store/api_keys/failures.py",
        old="        wait = self.addresses.blocked_for(address)",
        new="        wait = 0",
        tests=(
            "tests/gateway/test_failed_auth.py::test_a_brute_force_from_one_address_is_still_limited",
        ),
        removes="an address that keeps failing to authenticate gets 429",
    ),
    Mutation(
        name="failed-auth-unlimited-per-key-prefix",
        file="proxy/store/api_keys/failures.py",
        old="            wait = max(wait, self.prefixes.blocked_for(prefix))",
        new="            pass",
        tests=(
            "tests/gateway/test_failed_auth.py"
            "::test_one_key_failing_from_many_addresses_is_limited_by_its_prefix",
        ),
        removes="a key prefix that keeps failing from many addresses gets 429",
    ),
    Mutation(
        name="failed-auth-table-unbounded",
        file="proxy/store/api_keys/failures.py",
        old="        while len(self._entries) > self._max_entries:",
        new="        while False:",
        tests=(
            "tests/gateway/test_failed_auth.py"
            "::test_the_failure_table_is_bounded_in_entries_and_in_times_per_entry",
        ),
        removes="the failed-authentication tables hold a bounded number of entries",
    ),
    Mutation(
        name="forwarded-for-believed-from-anyone",
        file="proxy/core/peers.py",
        old="""        if not _trusted(client, trusted):
            break""",
        new="""        if False:
            break""",
        tests=(
            "tests/gateway/test_failed_auth.py::test_a_brute_force_from_one_address_is_still_limited",
            "tests/gateway/test_failed_auth.py::test_the_client_address_is_forwarded_only_by_trusted_peers",
        ),
        removes="a forwarded-for header is believed only from trusted_proxies",
    ),
    Mutation(
        name="metrics-on-the-gateway-port",
        file="proxy/app.py",
        old="""    if config.policy.identity == "header":
        # Metrics name""",
        new="""    if True:
        # Metrics name""",
        tests=(
            "tests/processes/test_metrics_exposure.py::test_gateway_proxy_port_serves_no_metrics_to_anyone",
            "tests/processes/test_metrics_exposure.py"
            "::test_a_gateway_process_serves_metrics_on_its_metrics_listener_only",
        ),
        removes="tenant-labelled metrics are never served on a gateway's proxy port",
    ),
    Mutation(
        name="admin-replay-keeps-the-secret",
        file="proxy/admin/api.py",
        old="            kept = response.get(KEPT, answer)",
        new="            kept = answer",
        tests=(
            "tests/admin/test_admin_secrets.py"
            "::test_a_replayed_key_issuing_call_answers_with_the_key_id_and_stores_no_secret",
        ),
        removes="an admin answer kept for replays never holds the API key it issued",
    ),
    Mutation(
        name="passthrough-ignores-tenant-status",
        file="proxy/gateway/handlers.py",
        old="    await admission.check_active((await admission.identify(request)).tenant)",
        new="    await admission.identify(request)",
        tests=(
            "tests/gateway/test_tenant_status.py"
            "::test_an_inactive_tenant_is_refused_on_every_route_and_spends_nothing",
        ),
        removes="a suspended or closed tenant gets 403 on the model list and passthrough paths",
    ),
    Mutation(
        name="replay-ignores-tenant-status",
        file="proxy/gateway/handlers.py",
        old="""        await admission.check_active(scope.tenant)
        return claim""",
        new="""        return claim""",
        tests=(
            "tests/gateway/test_tenant_status.py"
            "::test_a_suspended_tenant_gets_no_replay_of_an_answer_either",
        ),
        removes="a suspended tenant's retry is not answered from the idempotency record",
    ),
    Mutation(
        name="pinned-level-not-enforced",
        file="proxy/gateway/identity.py",
        old="""    for level, bound in {"tenant": key.tenant, **key.pins}.items():""",
        new="""    for level, bound in {"tenant": key.tenant}.items():""",
        tests=(
            "tests/gateway/test_key_pins.py"
            "::test_a_header_that_disagrees_with_a_pinned_level_is_403_and_reserves_nothing",
            "tests/gateway/test_key_pins.py::test_a_key_per_agent_spends_only_its_agents_budget",
        ),
        removes="a header that disagrees with a level the key pins is 403",
    ),
    Mutation(
        name="later-pins-not-stored",
        file="proxy/store/api_keys/records.py",
        old="""    if any(value != NONE for value in later):
        tokens += later""",
        new="""    if False:
        tokens += later""",
        tests=("tests/gateway/test_key_pins.py::test_pins_are_listed_and_survive_rotation",),
        removes="a Redis key store keeps a key's workflow, agent, toolset and run pins",
    ),
    # -- claims no test could see break before (issue 12) -------------------------------------
    Mutation(
        name="no-reading-on-after-client-left",
        file="proxy/gateway/relay.py",
        old="    drain_until = asyncio.get_running_loop().time() + timeouts.drain_after_disconnect",
        new="    drain_until = asyncio.get_running_loop().time()",
        tests=(
            "tests/gateway/test_streams.py"
            "::test_client_that_leaves_early_is_charged_the_usage_reported_after_it_left",
        ),
        removes="after a client leaves mid-stream the upstream is read on for its usage",
    ),
    Mutation(
        name="running-proxy-never-sweeps",
        file="proxy/gateway/upkeep.py",
        old='            resolved = await timed(metrics, "sweep", ledger.sweep_all())',
        new="            resolved = 0",
        tests=(
            "tests/processes/test_faults.py"
            "::test_a_running_replica_reclaims_a_killed_replicas_streams_by_itself",
        ),
        removes="a running proxy's own sweeper reclaims a dead replica's reservations",
    ),
    Mutation(
        name="response-headers-not-allow-listed",
        file="proxy/gateway/relay.py",
        old="    return allowed(upstream, RESPONSE_HEADERS_DOWN)",
        new=(
            "    return CIMultiDict((n, v) for n, v in upstream if n.lower() not in "
            "{'content-length', 'transfer-encoding', 'connection', 'content-encoding', 'date', "
            "'server'})"
        ),
        tests=(
            "tests/gateway/test_routes_and_faults.py"
            "::test_provider_account_headers_stay_behind_and_answer_headers_reach_the_client",
        ),
        removes="the provider's account and rate-limit headers never reach the client",
    ),
    Mutation(
        name="idempotency-fingerprint-without-scope",
        file="proxy/gateway/replay.py",
        old="{scope.path()}",
        new="",
        tests=(
            "tests/gateway/test_replay.py::test_an_answer_is_never_replayed_into_another_workflow_or_run",
        ),
        removes="a stored answer is replayed only into the scope that paid for it",
    ),
    Mutation(
        name="close-keeps-keys",
        file="proxy/admin/api.py",
        old="            await keys(request).revoke_all(record.id)",
        new="            pass",
        tests=("tests/admin/test_admin.py::test_closing_a_tenant_revokes_its_keys_on_every_path",),
        removes="closing a tenant revokes its API keys",
    ),
    Mutation.never(
        name="spill-uncapped",
        file="proxy/gateway/spill.py",
        old="        if len(self._entries) >= self.limit:",
        tests=(
            "tests/processes/test_faults.py::test_the_spill_drops_its_oldest_entries_beyond_its_cap",
        ),
        removes="the spill of unbudgeted charges is bounded",
    ),
    Mutation(
        name="spill-default-cap-changed",
        file="proxy/gateway/spill.py",
        old="SPILL_LIMIT = 100_000",
        new="SPILL_LIMIT = 1_000_000",
        tests=(
            "tests/processes/test_faults.py::test_a_running_proxy_spills_at_most_100_000_calls",
        ),
        removes="a running proxy spills at most 100,000 calls",
    ),
    Mutation(
        name="spill-not-flushed-at-shutdown",
        file="proxy/app.py",
        old="            await asyncio.wait_for(spill.drain(ledger, on_commit), 5)",
        new="            pass",
        tests=(
            "tests/processes/test_faults.py::test_charges_still_spilled_at_shutdown_are_written_on_the_way_out",
        ),
        removes="charges still spilled at shutdown are written to the ledger",
    ),
    Mutation.never(
        name="no-streamed-text-floor-beside-usage",
        file="proxy/gateway/settle.py",
        old="        if outcome.counted_completion > usage.completion_tokens:",
        tests=(
            "tests/gateway/test_streams.py"
            "::test_usage_report_below_the_streamed_text_is_charged_the_streamed_text",
            f"{GARBAGE}[memory]",
        ),
        removes="a usage report below the streamed text is charged the text",
    ),
    Mutation(
        name="ck-keys-not-redacted",
        file="proxy/gateway/logs.py",
        old="(?:sk|ck)-",
        new="(?:sk)-",
        tests=(
            "tests/gateway/test_observability.py"
            "::test_a_tenant_key_in_a_logged_field_never_reaches_the_running_proxy_s_log",
        ),
        removes="tenant ck- keys are redacted from every log line",
    ),
    # -- the estimate bounds what the provider bills (issue 12: an independent fake) ------------
    Mutation(
        name="responses-estimate-ignores-instructions",
        file="proxy/metering/shapes/responses.py",
        old='prompt += TOKENS_PER_MESSAGE + counter.count("system") + counter.count(said)',
        new="prompt += 0",
        tests=(BOUNDS,),
        removes="Responses instructions are counted in the estimate",
    ),
    Mutation(
        name="responses-string-input-drops-role",
        file="proxy/metering/shapes/responses.py",
        old='return TOKENS_PER_MESSAGE + counter.count("user") + counter.count(value)',
        new="return TOKENS_PER_MESSAGE + counter.count(value)",
        tests=(BOUNDS,),
        removes="a Responses string input is counted as a user message",
    ),
    Mutation(
        name="responses-items-content-ignored",
        file="proxy/metering/shapes/responses.py",
        old='+ role + _content_tokens(counter, item.get("content"), path)',
        new="+ role",
        tests=(BOUNDS,),
        removes="Responses input items are counted with their content",
    ),
    Mutation(
        name="messages-estimate-ignores-system",
        file="proxy/metering/shapes/messages.py",
        old='prompt = REPLY_PRIMING + _system_tokens(counter, body.get("system"))',
        new="prompt = REPLY_PRIMING",
        tests=(BOUNDS,),
        removes="an Anthropic system prompt is counted in the estimate",
    ),
    Mutation(
        name="messages-estimate-ignores-system-blocks",
        file="proxy/metering/shapes/messages.py",
        old='return TOKENS_PER_MESSAGE + _blocks_tokens(counter, system, "system")',
        new="return TOKENS_PER_MESSAGE",
        tests=(BOUNDS,),
        removes="an Anthropic system prompt given as blocks is counted",
    ),
    Mutation(
        name="chat-estimate-drops-per-message-overhead",
        file="proxy/metering/estimate.py",
        old='tokens = TOKENS_PER_MESSAGE + counter.count(expect_str(message.get("role")',
        new='tokens = counter.count(expect_str(message.get("role")',
        tests=(BOUNDS,),
        removes="chat messages carry the cookbook's per-message overhead",
    ),
    Mutation(
        name="chat-estimate-drops-name-token",
        file="proxy/metering/estimate.py",
        old="tokens += TOKENS_PER_NAME + counter.count(",
        new="tokens += counter.count(",
        tests=(BOUNDS,),
        removes="a chat message's name carries its extra token",
    ),
    # -- the referee itself (issue 12: flakes and exact oracles) -------------------------------
    Mutation(
        name="wire-forgets-the-next-connect",
        file="proxy/store/redis/wire.py",
        old="            if connecting.done() and self._connecting is connecting:",
        new="            if connecting.done():",
        tests=(
            "tests/store/test_wire.py::test_callers_retrying_a_failed_connect_share_one_new_connection",
        ),
        removes="callers retrying a failed connect share one new connection (no leaked sockets)",
    ),
    Mutation(
        name="reserve-refuses-an-exact-fit",
        file="proxy/store/ledger/lua/candidates.lua",
        old="    if (amounts[l.unit] or 0) > l.remaining then return i end",
        new="    if (amounts[l.unit] or 0) >= l.remaining then return i end",
        tests=(
            "tests/processes/test_faults.py::test_four_replicas_racing_one_budget_admit_exactly_what_it_fits",
            "tests/processes/test_multiprocess.py"
            "::test_two_processes_on_one_redis_forward_exactly_the_budget[exact-fit]",
        ),
        removes="replicas racing one budget admit exactly the calls it fits",
    ),
    Mutation(
        name="key-events-evict-nothing",
        file="proxy/store/api_keys/redis.py",
        old="                        listener.evict(sha)",
        new="                        pass",
        tests=(
            "tests/store/test_keys.py::test_revocation_reaches_another_process_through_pubsub",
            "tests/gateway/test_gateway.py::test_revocation_reaches_every_replica",
        ),
        removes="a revoked key is evicted from every replica's cache at once",
    ),
    # -- issue 13: prices are exact; what is billed beyond tokens is priced or refused --------
    Mutation(
        name="prefix-pricing",
        file="proxy/policy/runtime.py",
        old="return None if undated is None else self.models.get(undated)",
        new="return next((p for n, p in sorted(self.models.items(), key=lambda i: -len(i[0]))"
        ' if model.startswith(n + "-")), None)',
        tests=(
            "tests/gateway/test_billable.py"
            "::test_a_name_that_only_extends_a_priced_model_is_refused_and_reserves_nothing",
            "tests/policy/test_price_policy.py"
            "::test_a_model_is_priced_by_its_exact_name_a_dated_snapshot_or_a_declared_alias",
        ),
        removes="a name that only extends a priced model at a '-' is not priced as it",
    ),
    Mutation(
        name="dated-snapshots-unpriced",
        file="proxy/policy/runtime.py",
        old="undated = snapshot_of(model)",
        new="undated = None",
        tests=(f"{EACH}[memory-dated-snapshot]", f"{EACH}[memory-claude-dated-snapshot]"),
        removes="a dated snapshot is priced as the entry it is a snapshot of",
    ),
    Mutation(
        name="service-tier-factor-ignored",
        file="proxy/metering/pricing.py",
        old="    tier = tier_factor(price, usage)\n    tokens =",
        new="    tier = Fraction(1)\n    tokens =",
        tests=(
            f"{EACH}[memory-priority-chat]",
            "tests/policy/test_price_policy.py::test_a_call_costs_its_exact_price_rounded_up_once",
        ),
        removes="token prices are multiplied by the served tier's factor",
    ),
    Mutation(
        name="auto-tier-reserves-standard",
        file="proxy/metering/billable_reserve.py",
        old="return dearest[0] if dearest is not None and dearest[1] > 1 else None",
        new="return None",
        tests=(
            f"{EACH}[memory-auto-served-priority]",
            AUTO_TIER,
        ),
        removes="auto (or no tier) reserves the dearest tier the model prices",
    ),
    Mutation(
        name="reported-tier-ignored",
        file="proxy/metering/token_kinds.py",
        old="return dataclasses.replace(usage, service_tier=tier)",
        new="return usage",
        tests=(AUTO_TIER,),
        removes="a chat call is charged at the service tier its answer reports",
    ),
    Mutation.never(
        name="unpriced-tier-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if tier != AUTO and tier not in STANDARD_TIERS and tier not in price.service_tiers:",
        tests=(f"{REFUSED}[memory-tier-the-model-lacks]",),
        removes="a service tier the model does not price is refused",
    ),
    Mutation(
        name="unpriced-report-charged-as-reported",
        file="proxy/metering/pricing.py",
        old="return {unit: max(amount, reserved.get(unit, 0)) for unit, amount in charged.items()}",
        new="return charged",
        tests=(
            "tests/gateway/test_billable.py"
            "::test_a_served_tier_the_policy_does_not_price_charges_the_reservation_loudly",
        ),
        removes="an answer reporting an unpriced tier or tool is charged at least the reservation",
    ),
    Mutation(
        name="tool-fees-not-charged",
        file="proxy/metering/pricing.py",
        old="fees = sum(n * price.tool_calls[tool].per_call"
        " for tool, n in _priced_tools(price, usage))",
        new="fees = 0",
        tests=(f"{EACH}[memory-web-search]", f"{EACH}[memory-anthropic-web-search]"),
        removes="hosted tool calls are charged their fee per call",
    ),
    Mutation(
        name="tool-calls-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="calls.append((dearest, billables.pool))",
        new="calls.append((dearest, 0))",
        tests=(f"{EACH}[memory-web-search]", f"{EACH}[memory-file-and-web-search]"),
        removes="Responses reserves max_tool_calls calls of the dearest hosted tool",
    ),
    Mutation(
        name="tool-input-tokens-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="extra += billables.pool * max(fees[tool].input_tokens for tool in pooled)",
        new="extra += 0",
        tests=(f"{EACH}[memory-web-search-streamed]",),
        removes="what each hosted tool call adds to the input is reserved",
    ),
    Mutation(
        name="responses-tool-items-ignored",
        file="proxy/metering/shapes/responses.py",
        old='tool_calls=responses_tool_calls(obj.get("output")),',
        new="tool_calls=(),",
        tests=(f"{EACH}[memory-web-search]", f"{EACH}[memory-web-search-streamed]"),
        removes="hosted tool calls among a response's output items are charged",
    ),
    Mutation.never(
        name="code-interpreter-charged-per-call",
        file="proxy/metering/tool_uses.py",
        old="if container is not None and container in containers:",
        tests=(f"{EACH}[memory-code-interpreter]",),
        removes="code_interpreter is charged per container, not per call",
    ),
    Mutation(
        name="server-tool-use-ignored",
        file="proxy/metering/shapes/messages.py",
        old='tool_calls=anthropic_tool_calls(usage.get("server_tool_use")),',
        new="tool_calls=(),",
        tests=(
            f"{EACH}[memory-anthropic-web-search]",
            f"{EACH}[memory-anthropic-web-search-streamed]",
        ),
        removes="Anthropic server_tool_use.web_search_requests are charged at settlement",
    ),
    Mutation(
        name="max-tool-calls-not-written",
        file="proxy/metering/billable.py",
        old='limits = {"max_tool_calls": default_calls} if (pooled or stored) and asked is None'
        " else {}",
        new="limits: dict[str, int] = {}",
        tests=(
            "tests/gateway/test_billable.py"
            "::test_with_a_hard_bound_the_plan_default_bounds_hosted_tool_calls_upstream",
            f"{EACH}[memory-web-search-plan-default]",
        ),
        removes="with bound: hard the plan's default_max_tool_calls is sent as max_tool_calls",
    ),
    Mutation(
        name="max-uses-not-written",
        file="proxy/metering/billable.py",
        old='written.append({**tool, "max_uses": default_calls} if bounded else tool)',
        new="written.append(tool)",
        tests=(f"{EACH}[memory-anthropic-web-search-plan-default]",),
        removes="with bound: hard an Anthropic server tool gets max_uses",
    ),
    Mutation.never(
        name="unpriced-tool-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if tool not in price.tool_calls:",
        tests=(
            f"{REFUSED}[memory-hosted-tool-the-model-lacks]",
            f"{REFUSED}[memory-anthropic-server-tool]",
        ),
        removes="a hosted tool the model does not price is refused",
    ),
    Mutation.always(
        name="long-context-prices-ignored",
        file="proxy/metering/pricing.py",
        old="if long is None or usage.prompt_tokens <= long.above:",
        tests=(f"{EACH}[memory-long-context]", f"{EACH}[memory-long-context-streamed]"),
        removes="a prompt above the threshold is priced at the long-context prices",
    ),
    Mutation.never(
        name="long-context-beta-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if billables.long_context is not None and price.long_context is None:",
        tests=(
            "tests/gateway/test_billable.py::test_a_long_context_beta_the_policy_does_not_price_is_refused",
        ),
        removes="an anthropic-beta context-1m header needs long-context prices",
    ),
    Mutation(
        name="documents-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="extra += len(billables.documents) * (price.document_tokens or 0)",
        new="extra += 0",
        tests=(
            f"{EACH}[memory-document-responses]",
            f"{EACH}[memory-stored-prompt]",
            f"{EACH}[memory-document-messages]",
        ),
        removes="each document input reserves the model's documents tokens",
    ),
    Mutation.never(
        name="unpriced-document-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if billables.documents and price.document_tokens is None:",
        tests=(f"{REFUSED}[memory-document-file-id]", f"{REFUSED}[memory-anthropic-document]"),
        removes="a document input the model does not price is refused",
    ),
    Mutation(
        name="claude-tool-prompt-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="extra += price.tool_prompt_tokens if billables.tools else 0",
        new="extra += 0",
        tests=(
            f"{BOUNDS}[memory-messages-tools-whole]",
            f"{EACH}[memory-claude-tool-prompt]",
            MODELLED,
        ),
        removes="a call with tools reserves the model's tool_prompt_tokens",
    ),
    Mutation(
        name="claude-tool-prompt-default-zero",
        file="proxy/policy/features.py",
        old='return CLAUDE_TOOL_PROMPT_TOKENS if name.startswith("claude") else 0',
        new="return 0",
        tests=(f"{BOUNDS}[memory-messages-tools-whole]",),
        removes="claude* models default to Anthropic's 346-token tool-use system prompt",
    ),
    Mutation(
        name="fit-ignores-tier-and-fees",
        file="proxy/budget/reserve.py",
        old="rest, output = fit_rates(price, variant.usage(0))",
        new="rest, output = -(-variant.prompt_tokens * price.input // 10**6), price.output",
        tests=(
            "tests/gateway/test_billable.py"
            "::test_a_completion_fitted_to_what_remains_is_priced_at_the_tier_and_tool_fees",
        ),
        removes="a fitted completion is priced at the tier, with the tool fees",
    ),
    # -- issue 13: choices, limits and the closed world of request fields --------------------
    Mutation(
        name="choices-ignore-batch",
        file="proxy/metering/estimate.py",
        old='prompts = batch_size(body.get("prompt")) if endpoint == "completions" else 1',
        new="prompts = 1",
        tests=(
            f"{CHOICES}::test_a_batch_of_200_prompts_is_refused_by_a_budget_that_covers_one",
            f"{CHOICES}::test_a_batch_is_reserved_for_every_prompts_choices",
            f"{CHOICES}::test_tokens_per_minute_counts_every_choice_of_a_batch",
        ),
        removes="a completions batch gets n choices for each of its prompts",
    ),
    Mutation(
        name="chat-ignores-best-of",
        file="proxy/metering/estimate.py",
        old='n, best_of = _count(body, "n"), _count(body, "best_of")',
        new='n, best_of = _count(body, "n"), _count(body, "best_of") ** (endpoint != "chat")',
        tests=(
            f"{CHOICES}::test_best_of_on_chat_is_reserved_for_every_candidate",
            f"{CHOICES}::test_best_of_on_chat_past_the_budget_is_refused",
        ),
        removes="best_of on chat (vLLM) reserves every candidate",
    ),
    Mutation(
        name="zero-limit-accepted",
        file="proxy/metering/estimate.py",
        old="if isinstance(value, bool) or not isinstance(value, int) or value < 1:",
        new="if isinstance(value, bool) or not isinstance(value, int) or value < 0:",
        tests=(f"{CHOICES}::test_a_limit_that_is_not_a_positive_integer_is_400",),
        removes="a completion limit of 0 is refused, not forwarded as no limit",
    ),
    Mutation(
        name="second-limit-field-kept",
        file="proxy/budget/call.py",
        old="return field, tuple(f for f in ANY_LIMIT_FIELD if f != field and f in self.body)",
        new="return field, ()",
        tests=(
            f"{CHOICES}::test_exactly_one_limit_field_goes_up_holding_the_reserved_bound",
            f"{CHOICES}::test_a_limit_field_of_another_api_is_taken_out_when_unknown_fields_"
            "are_forwarded",
        ),
        removes="only the limit field the proxy reserved for goes up",
    ),
    Mutation(
        name="fit-ignores-choices",
        file="proxy/budget/reserve.py",
        old="choices=call.choices,",
        new="choices=1,",
        tests=(f"{CHOICES}::test_fit_spreads_what_remains_over_every_choice_of_a_batch",),
        removes="fit divides what remains among every choice",
    ),
    Mutation(
        name="suffix-counted-once-per-batch",
        file="proxy/metering/estimate.py",
        old='counter.count(expect_str(suffix, "suffix")) * batch_size(prompt)',
        new='counter.count(expect_str(suffix, "suffix"))',
        tests=(MODELLED,),
        removes="a completions suffix is counted after every prompt of a batch",
    ),
    Mutation(
        name="messages-tool-prompt-ignored",
        file="proxy/metering/billable_reserve.py",
        old="extra += price.tool_prompt_tokens if billables.tools else 0",
        new="extra += 0",
        tests=(f"{FIELDS}::test_a_modelled_field_is_reserved_for_what_the_provider_bills",),
        removes="the tool-use system prompt Anthropic adds is reserved",
    ),
    Mutation(
        name="messages-output-format-ignored",
        file="proxy/metering/shapes/messages.py",
        old='prompt += counter.count_json(output["format"])',
        new="prompt += 0",
        tests=(MODELLED,),
        removes="a structured output's schema is reserved on /v1/messages",
    ),
    Mutation(
        name="unknown-fields-forwarded",
        file="proxy/metering/request_fields.py",
        old="raise _unknown(name, endpoint)",
        new="continue",
        tests=(f"{FIELDS}::test_an_unknown_field_is_400_unpriced_feature_and_changes_nothing",),
        removes="a field the table does not know is refused under request_fields: strict",
    ),
    Mutation.never(
        name="refused-fields-forwarded",
        file="proxy/metering/request_fields.py",
        old='if field.kind == "refused" and not _asks_nothing(field, value):',
        tests=(f"{FIELDS}::test_a_refused_field_is_400_unpriced_feature_and_changes_nothing",),
        removes="a cost-bearing field nobody models is refused",
    ),
    Mutation(
        name="harmless-values-refused",
        file="proxy/metering/request_fields.py",
        old='if field.kind == "refused" and not _asks_nothing(field, value):',
        new='if field.kind == "refused":',
        tests=(f"{FIELDS}::test_a_refused_field_whose_value_asks_for_nothing_passes",),
        removes="background: false and the like pass",
    ),
    Mutation.never(
        name="forward-setting-ignored",
        file="proxy/metering/request_fields.py",
        old='if mode == "forward":',
        tests=(
            f"{FIELDS}::test_an_unknown_field_is_forwarded_and_charged_with_request_fields_forward",
            f"{FIELDS}::test_a_refused_field_is_forwarded_when_the_policy_says_forward",
        ),
        removes="request_fields: forward forwards what the proxy cannot price",
    ),
    Mutation(
        name="fields-never-checked",
        file="proxy/budget/call.py",
        old="check_fields(body, endpoint.name, policy.request_fields)",
        new="pass",
        tests=(
            f"{FIELDS}::test_an_unknown_field_is_400_unpriced_feature_and_changes_nothing",
            f"{FIELDS}::test_azure_deployment_paths_use_the_openai_tables",
        ),
        removes="every budgeted request passes the field table",
    ),
    Mutation(
        name="fake-ignores-batch",
        file="proxy/testing/fake_upstream.py",
        old="generated = max(asked, best_of) * prompts",
        new="generated = max(asked, best_of)",
        tests=(f"{CHOICES}::test_a_batch_is_reserved_for_every_prompts_choices",),
        removes="the fake bills every prompt of a batch, as a provider does",
    ),
    # -- issue 13, review: what the adversarial review found --------------------------------
    Mutation(
        name="cut-stream-charged-its-running-report",
        file="proxy/gateway/settle.py",
        old="        if outcome.complete:\n            return charged\n",
        new="        return charged\n",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_a_stream_with_running_usage_cut_early_is_charged_its_reservation",
            f"{GARBAGE}[memory]",
        ),
        removes="a stream cut short is charged at least its reservation, report or not",
    ),
    Mutation(
        name="auto-tier-left-to-the-account",
        file="proxy/budget/variants.py",
        old="            writes=tier if self.bound else {},",
        new="            writes={},",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_auto_served_at_an_unpriced_tier_is_not_billed_more_than_charged",
        ),
        removes="with bound: hard, auto on a model pricing no dearer tier is sent standard",
    ),
    Mutation(
        name="code-interpreter-calls-unbounded",
        file="proxy/metering/billable.py",
        old="pooled = tuple(dict.fromkeys(hosted))",
        new="pooled = tuple(dict.fromkeys(t for t in hosted if t != PER_CONTAINER))",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_code_interpreter_calls_are_bounded_by_what_was_reserved",
        ),
        removes="code_interpreter's calls count toward max_tool_calls for the input each adds",
    ),
    Mutation.never(
        name="audio-output-unpriced-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if billables.audio_output is not None and price.audio_output is None:",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_audio_output_on_a_model_without_an_audio_price_is_refused",
        ),
        removes="audio output on a model without an audio_output price is refused",
    ),
    Mutation.never(
        name="chat-web-search-forwarded",
        file="proxy/metering/billable.py",
        old='if body.get("web_search_options") is not None:',
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_chat_web_search_options_is_refused_or_its_search_fee_reserved",
        ),
        removes="chat web_search_options, whose fee is not modelled, is refused",
    ),
    Mutation(
        name="stored-prompt-tools-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="pooled = tuple(dict.fromkeys((*pooled, *fees)))",
        new="pass",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_a_stored_prompt_with_hosted_tools_is_not_charged_beyond_its_reservation",
        ),
        removes="a stored prompt reserves every hosted tool its model prices",
    ),
    # -- issue 12: what the fuzz suite was shown to catch ------------------------------------
    Mutation(
        name="memory-commit-under-records-by-one",
        file="proxy/store/ledger/memory.py",
        old="""        if r.state == "OPEN":
            t.settle_lines(r.fields, r.amounts, actual, now, s)""",
        new="""        if r.state == "OPEN":
            t.settle_lines(r.fields, r.amounts, {u: a - 1 for u, a in actual.items()}, now, s)""",
        tests=(f"{COMMIT_ABOVE_ESTIMATE}[memory]", f"{FUZZED_CALLS}[memory]"),
        removes="a memory commit records every unit of what the provider reported",
    ),
    Mutation(
        name="commit-under-records-by-one",
        file="proxy/store/ledger/lua/commit.lua",
        old="  settle_lines(r.prefixes, est, act)\n  free_held(r.held)\n",
        new="  local less = {}\n  for unit, x in pairs(act) do less[unit] = x - 1 end\n"
        "  settle_lines(r.prefixes, est, less)\n  free_held(r.held)\n",
        tests=(f"{COMMIT_ABOVE_ESTIMATE}[redis]", f"{FUZZED_CALLS}[redis]"),
        removes="a Redis commit records every unit of what the provider reported",
    ),
    Mutation(
        name="commit-charges-only-the-tenant-line",
        file="proxy/store/ledger/lua/commit.lua",
        old="  settle_lines(r.prefixes, est, act)\n  free_held(r.held)\n",
        new="  settle_lines(r.prefixes, est, nil)\n  settle_lines({ r.prefixes[1] }, nil, act)\n"
        "  free_held(r.held)\n",
        tests=(f"{COMMIT_ABOVE_ESTIMATE}[redis]", f"{FUZZED_CALLS}[redis]"),
        removes="a Redis commit charges every budget line of the call, not only the tenant's",
    ),
    Mutation(
        name="memory-commit-charges-only-the-tenant-line",
        file="proxy/store/ledger/memory.py",
        old="""            t.settle_lines(r.fields, r.amounts, actual, now, s)
            quotas.free(t.counters, r.held)""",
        new="""            t.settle_lines(r.fields, r.amounts, None, now, s)
            t.settle_lines(r.fields[:1], None, actual, now, s)
            quotas.free(t.counters, r.held)""",
        tests=(f"{COMMIT_ABOVE_ESTIMATE}[memory]", f"{FUZZED_CALLS}[memory]"),
        removes="a memory commit charges every budget line of the call, not only the tenant's",
    ),
    Mutation(
        name="reserve-admits-past-the-limit",
        file="proxy/store/ledger/lua/candidates.lua",
        old="    if (amounts[l.unit] or 0) > l.remaining then return i end",
        new="    if (amounts[l.unit] or 0) > l.remaining + 1 then return i end",
        tests=(f"{EXACT_FIT}[redis]",),
        removes="the Redis reserve admits nothing past a line's limit, not even one unit",
    ),
    Mutation(
        name="memory-reserve-admits-past-the-limit",
        file="proxy/store/ledger/choose.py",
        old="amounts.get(unit, 0) > remaining), None",
        new="amounts.get(unit, 0) > remaining + 1), None",
        tests=(f"{EXACT_FIT}[memory]",),
        removes="the memory reserve admits nothing past a line's limit, not even one unit",
    ),
    Mutation(
        name="upstream-4xx-charged",
        file="proxy/gateway/pipeline.py",
        old="        if upstream.status >= 400:\n",
        new="        if upstream.status >= 500:\n",
        tests=(f"{GARBAGE}[memory]",),
        removes="a 4xx answer from the provider (400, 429) releases the reservation",
    ),
    Mutation(
        name="cached-tokens-priced-as-input",
        file="proxy/metering/pricing.py",
        old="        + usage.cached_tokens * price.cached_input\n",
        new="        + usage.cached_tokens * price.input\n",
        tests=(
            "tests/gateway/test_reported_tokens.py"
            "::test_cached_prompt_tokens_are_charged_at_the_cached_price",
            f"{GARBAGE}[memory]",
        ),
        removes="cached prompt tokens are charged at the cached price",
    ),
    Mutation(
        name="replay-hash-fails-on-deep-nesting",
        file="proxy/gateway/replay.py",
        old="    except (orjson.JSONDecodeError, orjson.JSONEncodeError):",
        new="    except orjson.JSONDecodeError:",
        tests=(
            "tests/gateway/test_replay.py"
            "::test_key_on_a_body_nested_too_deep_to_hash_is_400_and_frees_the_key",
            f"{FUZZED_CALLS}[memory]",
        ),
        removes="a body nested too deep to re-serialise is hashed as sent, not a 500",
    ),
    Mutation(
        name="whole-answer-to-a-stream-charged-its-prompt",
        file="proxy/gateway/streaming.py",
        old="    return Outcome(usage=usage)\n",
        new="    return Outcome(usage=usage, streamed=call.stream)\n",
        tests=(f"{GARBAGE}[memory]",),
        removes="a whole answer without usage to a stream request is charged its reservation",
    ),
    Mutation(
        name="stream-without-done-taken-as-finished",
        file="proxy/gateway/streaming.py",
        old="    complete = result.complete and ended and tracker.events > 0\n",
        new="    complete = result.complete and tracker.events > 0\n",
        tests=(f"{GARBAGE}[memory]",),
        removes="a stream that ends without [DONE] is cut, so charged at least its reservation",
    ),
    # -- issue 12: the referee's own flakes ----------------------------------------------------
    Mutation(
        name="burst-reloads-per-caller",
        file="proxy/store/redis/flights.py",
        old="        flight = self._running.get(key)\n",
        new="        flight = None\n",
        tests=(
            "tests/store/test_ledger_redis.py"
            "::test_a_burst_on_a_cold_store_reloads_the_scripts_and_registers_the_tenant_once",
            "tests/store/test_flights.py",
        ),
        removes="a burst on a cold store shares one script reload and one registration",
    ),
    Mutation(
        name="shared-reload-dies-with-a-cancelled-caller",
        file="proxy/store/redis/flights.py",
        old="            await asyncio.shield(flight)\n",
        new="            await flight\n",
        tests=(
            "tests/store/test_flights.py::test_a_cancelled_caller_leaves_the_run_to_the_others",
        ),
        removes="a caller that gives up leaves the shared reload running for the others",
    ),
    Mutation.always(
        name="workers-bind-port-0-each",
        file="proxy/cli/ports.py",
        old="        if port != 0:\n",
        tests=("tests/processes/test_workers.py::test_both_workers_serve_calls",),
        removes="with --workers, port 0 is one free port every worker serves",
    ),
    Mutation(
        name="startup-line-names-the-asked-ports",
        file="proxy/cli/serve.py",
        old="    bound = iter(_bound(runner) for runner in runners)\n",
        new="    asked = [(settings.host, settings.port), settings.admin, settings.metrics]\n"
        '    bound = iter(f"{a[0]}:{a[1]}" for a in asked if a)\n',
        tests=("tests/gateway/test_observability.py::test_a_metrics_listener_serves_only_metrics",),
        removes="the startup line names the ports bound (port 0 resolved)",
    ),
    Mutation(
        name="a-test-module-imports-another",
        file="tests/gateway/test_alerts.py",
        old="from admin_support import stacks\n",
        new="from test_admin import stacks\n",
        tests=("tests/test_suite_imports.py",),
        removes="no file of the suite imports a test module",
    ),
    # -- issue 15: the reservation lifecycle (time-outs, resets, runs, zones, actions, memory) --
    Mutation(
        name="reserve-timeout-not-released",
        file="proxy/gateway/admission.py",
        old=(
            "            if isinstance(exc, LedgerUnavailable) and exc.maybe_ran:\n"
            "                self._fail_open.spill.add_abandoned(request)\n"
        ),
        new="",
        tests=(f"{TIMEOUT}::test_a_reserve_that_timed_out_is_released_by_id_never_charged",),
        removes="a call's reserve that timed out (503) is released by its id",
    ),
    Mutation(
        name="refused-reserve-spills-a-release",
        file="proxy/gateway/admission.py",
        old="            if isinstance(exc, LedgerUnavailable) and exc.maybe_ran:\n",
        new="            if True:\n",
        tests=(f"{TIMEOUT}::test_a_reserve_that_never_reached_redis_spills_no_release",),
        removes="a reserve that never reached Redis queues no release (the spill keeps its room)",
    ),
    Mutation(
        name="action-reserve-timeout-not-released",
        file="proxy/gateway/admission.py",
        old=(
            "            if abandoned is not None and isinstance(exc, LedgerUnavailable) and "
            "exc.maybe_ran:\n"
            "                self._fail_open.spill.add_abandoned(abandoned)\n"
        ),
        new="",
        tests=(f"{TIMEOUT}::test_an_action_reserve_that_timed_out_is_released_by_id",),
        removes="an action's reserve that timed out (503) is released by its id",
    ),
    Mutation(
        name="late-commit-refunds-a-wiped-charge",
        file="proxy/store/ledger/lua/common.lua",
        old="    if generation('reset|' .. p) > since then d = math.max(d, 0) end\n",
        new="",
        tests=(f"{LIFECYCLE}::test_a_late_commit_never_refunds_an_expiry_charge_a_reset_wiped",),
        removes="Redis: a late commit never refunds an expiry charge a RESET_SPENT wiped",
    ),
    Mutation(
        name="memory-late-commit-refunds-a-wiped-charge",
        file="proxy/store/ledger/memory_state.py",
        old='            if self.generation(f"reset|{prefix}") > since:\n',
        new="            if False:\n",
        tests=(f"{LIFECYCLE}::test_a_late_commit_never_refunds_an_expiry_charge_a_reset_wiped",),
        removes="memory: a late commit never refunds an expiry charge a RESET_SPENT wiped",
    ),
    Mutation(
        name="expiry-forgets-its-reset-generation",
        file="proxy/store/ledger/lua/sweep.lua",
        old="      redis.call('HSET', KEYS[1], GEN .. 'exp|' .. id, fmt(gen))\n",
        new="",
        tests=(f"{LIFECYCLE}::test_a_late_commit_refunds_an_expiry_charge_made_after_the_reset",),
        removes="Redis: an expiry charge made after a reset is refunded by the late commit",
    ),
    Mutation(
        name="memory-expiry-forgets-its-reset-generation",
        file="proxy/store/ledger/memory_state.py",
        old="        if gen:\n",
        new="        if False:\n",
        tests=(f"{LIFECYCLE}::test_a_late_commit_refunds_an_expiry_charge_made_after_the_reset",),
        removes="memory: an expiry charge made after a reset is refunded by the late commit",
    ),
    Mutation(
        name="late-commit-takes-a-line-below-zero",
        file="proxy/store/ledger/lua/common.lua",
        old="    if spent then d = math.max(d, -spent) end\n",
        new="",
        tests=(
            f"{LIFECYCLE}::test_a_late_commit_to_a_line_already_dropped_never_takes_it_below_zero",
        ),
        removes="Redis: a late commit's refund never takes a line below zero",
    ),
    Mutation(
        name="memory-late-commit-takes-a-line-below-zero",
        file="proxy/store/ledger/memory_state.py",
        old='            d = max(d, -self.ledger.get(f"{prefix}|spent", 0))\n',
        new="",
        tests=(
            f"{LIFECYCLE}::test_a_late_commit_to_a_line_already_dropped_never_takes_it_below_zero",
        ),
        removes="memory: a late commit's refund never takes a line below zero",
    ),
    Mutation(
        name="lifecycle-machine-late-commit-rule",
        file="proxy/store/ledger/lua/common.lua",
        old="    if generation('reset|' .. p) > since then d = math.max(d, 0) end\n    local spent",
        new="    local spent",
        tests=(f"{MACHINE}::test_ledger_invariants_hold_under_any_lifecycle[redis]",),
        removes="the state machine finds a late commit that refunds a wiped charge (Redis)",
    ),
    Mutation(
        name="run-entry-expires-under-an-open-call",
        file="proxy/store/ledger/lua/common.lua",
        old="    keep(prefix, NOW + (hold or 0) + IDLE)",
        new="    keep(prefix, NOW + IDLE)",
        tests=(f"{LIFECYCLE}::test_run_entries_outlive_their_open_calls_whatever_the_idle_ttl",),
        removes="Redis: a run's budget entry outlives its open calls",
    ),
    Mutation(
        name="run-counters-expire-under-an-open-call",
        file="proxy/store/ledger/lua/quotas.lua",
        old="    keep(name, NOW + hold + IDLE)",
        new="    keep(name, NOW + IDLE)",
        tests=(f"{LIFECYCLE}::test_run_entries_outlive_their_open_calls_whatever_the_idle_ttl",),
        removes="Redis: a run's step and day counters outlive its open calls",
    ),
    Mutation(
        name="memory-run-entry-expires-under-an-open-call",
        file="proxy/store/ledger/memory.py",
        old="            t.touch(ln.prefix, now, self.settings, cal, record.deadline - now)",
        new="            t.touch(ln.prefix, now, self.settings, cal)",
        tests=(f"{LIFECYCLE}::test_run_entries_outlive_their_open_calls_whatever_the_idle_ttl",),
        removes="memory: a run's budget entry outlives its open calls",
    ),
    Mutation(
        name="check-allows-run-idle-below-the-cap",
        file="proxy/policy/lifetimes.py",
        old="    if idle <= cap:",
        new="    if idle < 0:",
        tests=(f"{POLICY}[run entries that would expire under an open call]",),
        removes="cycles-proxy check refuses run_idle_seconds <= cap_seconds",
    ),
    Mutation(
        name="check-cap-leaves-out-connect-and-first-byte",
        file="proxy/policy/lifetimes.py",
        old='    names = ("connect", "first_byte", last) if stream else ("connect", last)',
        new='    names = (last,) if stream else ("connect", last)',
        tests=(
            f"{POLICY}[reservation cap shorter than connecting, the first byte, the stream and the"
            " drain]",
        ),
        removes="cycles-proxy check counts connect and first_byte in the stream a cap must outlive",
    ),
    Mutation(
        name="zone-change-applies-at-once",
        file="proxy/store/ledger/lua/tenant.lua",
        old=(
            "      redis.call('HSET', KEYS[5], 'hold_' .. kind, pid .. ':' .. "
            "fmt(period_end(pid)))\n"
        ),
        new="",
        tests=(f"{LIFECYCLE}::test_a_zone_change_east_does_not_hand_out_a_fresh_day",),
        removes="Redis: a time-zone change holds the current day and month until they end",
    ),
    Mutation(
        name="memory-zone-change-applies-at-once",
        file="proxy/store/tenants/memory.py",
        old="            t.meta |= hold_fields(cal, now)",
        new="            pass",
        tests=(f"{LIFECYCLE}::test_a_zone_change_east_does_not_hand_out_a_fresh_day",),
        removes="memory: a time-zone change holds the current day and month until they end",
    ),
    Mutation(
        name="zone-change-west-restarts-an-old-day",
        file="proxy/store/ledger/lua/common.lua",
        old="  if held and pid < held.pid then return held.pid end\n",
        new="",
        tests=(f"{LIFECYCLE}::test_a_zone_change_west_carries_the_day_on_until_it_ends_there",),
        removes="Redis: after a change west, no period id earlier than the held one",
    ),
    Mutation(
        name="memory-zone-change-west-restarts-an-old-day",
        file="proxy/store/ledger/calendar.py",
        old="        return held.pid if held is not None and pid < held.pid else pid",
        new="        return pid",
        tests=(f"{LIFECYCLE}::test_a_zone_change_west_carries_the_day_on_until_it_ends_there",),
        removes="memory: after a change west, no period id earlier than the held one",
    ),
    Mutation(
        name="action-commit-charged-after-its-release",
        file="proxy/store/ledger/lua/commit.lua",
        old="if released and has_flag(flags, 'f') then return { r.state, '0', '-' } end\n",
        new="",
        tests=(
            f"{ACTIONS}::test_a_commit_racing_a_release_is_refused_once_the_release_was_answered",
        ),
        removes="Redis: an action's release, once answered, is final",
    ),
    Mutation(
        name="memory-action-commit-charged-after-its-release",
        file="proxy/store/ledger/memory.py",
        old='        if r.state in ("RELEASED", "EXPIRED_RELEASED") and final_release:',
        new="        if False:",
        tests=(
            f"{ACTIONS}::test_a_commit_racing_a_release_is_refused_once_the_release_was_answered",
        ),
        removes="memory: an action's release, once answered, is final",
    ),
    Mutation(
        name="action-settled-from-any-scope",
        file="proxy/actions/routes.py",
        old="    check_scope(scope, record)\n",
        new="",
        tests=(
            f"{ACTIONS}::test_another_scope_of_the_tenant_can_neither_read_nor_settle_a_reservation",
        ),
        removes="only the scope that reserved an action reads or settles it",
    ),
    Mutation(
        name="memory-reserve-scans-the-expiry-table",
        file="proxy/store/ledger/memory_state.py",
        old="        for _, name in self.ledger_exp.pop_due(now, limit):",
        new=(
            "        for _, name in self.ledger_exp.pop_due(now, limit) "
            "if sorted(self.ledger_exp.items()) else []:"
        ),
        tests=(f"{LIFECYCLE}::test_memory_reserve_time_does_not_grow_with_the_runs_of_a_tenant",),
        removes="memory: a reserve does not scan the tenant's whole expiry table",
    ),
    # -- issue 15: sums in the safe range, the sweeper at scale -----------------------------
    Mutation(
        name="sum-overflow-allowed",
        file="proxy/store/ledger/lua/common.lua",
        old="if not x or x ~= math.floor(x) or math.abs(x + d) > SAFE then return p",
        new="if false then return p",
        tests=(
            SWEEPER + "test_a_charge_past_the_safe_range_is_refused_and_writes_nothing[redis]",
            SWEEPER + "test_a_reservation_past_the_safe_range_is_refused_and_counts_nothing[redis]",
            SWEEPER + "test_a_credit_past_the_safe_range_is_refused[redis]",
        ),
        removes="Redis scripts refuse, before writing, a sum that would leave the safe range",
    ),
    Mutation(
        name="memory-sum-overflow-allowed",
        file="proxy/store/ledger/checks.py",
        old="if abs(ledger.get(name, 0) + d) > SAFE_SUM:",
        new="if False:",
        tests=(
            SWEEPER + "test_a_charge_past_the_safe_range_is_refused_and_writes_nothing[memory]",
            SWEEPER + "test_a_reservation_past_the_safe_range_is_refused_and_counts_nothing"
            "[memory]",
            SWEEPER + "test_a_credit_past_the_safe_range_is_refused[memory]",
        ),
        removes="memory:// refuses, before writing, a sum that would leave the safe range",
    ),
    Mutation(
        name="sweeper-tenant-error-stops-pass",
        file="proxy/store/ledger/sweeping.py",
        old='"""`work` for one tenant; if it fails, log and count it and return None."""\n',
        new='"""`work` for one tenant; if it fails, log and count it and return None."""\n'
        "        return await work\n",
        tests=(SWEEPER + "test_one_tenants_failing_sweep_is_skipped_counted_and_the_pass_goes_on",),
        removes="one tenant's failing sweep is logged, counted and skipped; the pass goes on",
    ),
    Mutation(
        name="heartbeat-waits-for-sweep",
        file="proxy/app.py",
        old="    if every is not None:\n"
        "        app[HEARTBEAT] = tasks.spawn(upkeep.heartbeat_forever(app[LEDGER], every), "
        'name="heartbeat")\n',
        new="",
        tests=(SWEEPER + "test_the_heartbeat_goes_on_while_a_sweep_runs",),
        removes="the heartbeat is a task of its own, never waiting for a sweep",
    ),
    Mutation(
        name="action-commit-uncapped",
        file="proxy/actions/reserving.py",
        old="    if amount > reserved:",
        new="    if False:",
        tests=(
            "tests/actions/test_actions.py::test_a_commit_above_its_reservation_is_400_and_commits_nothing",
        ),
        removes="an action commit above its reservation is 400 and commits nothing",
    ),
    Mutation(
        name="sweep-visits-idle-tenants",
        file="proxy/store/ledger/sweep_redis.py",
        old="while page := await self._page(shard, run.now, after):",
        new="while page := await self._page(shard, 2**62, after):",
        tests=(SWEEPER + "test_a_pass_visits_only_the_tenants_with_something_due[redis]",),
        removes="a Redis sweep pass visits only the tenants the due index says are due",
    ),
    Mutation(
        name="memory-sweep-visits-idle-tenants",
        file="proxy/store/ledger/sweep_memory.py",
        old="tenants = self._due.take(now)",
        new="tenants = sorted(self._tenants)",
        tests=(SWEEPER + "test_a_pass_visits_only_the_tenants_with_something_due[memory]",),
        removes="a memory:// sweep pass visits only the tenants its due index names",
    ),
    Mutation(
        name="reserve-not-indexed",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  reindex()\n  local out",
        new="  local out",
        tests=(SWEEPER + "test_a_pass_visits_only_the_tenants_with_something_due[redis]",),
        removes="reserve.lua puts the tenant in the due index at its earliest due time",
    ),
    Mutation(
        name="dead-reclaim-ignores-budget",
        file="proxy/store/ledger/sweep_redis.py",
        old="work = self._sweep_tenant(r.tenant, r.dead, r.cursor, budget=run.budget)",
        new="work = self._sweep_tenant(r.tenant, r.dead, r.cursor)",
        tests=(
            SWEEPER + "test_a_dead_replicas_reclaim_is_bounded_per_pass_and_resumed_until_done",
        ),
        removes="a dead replica's reclaim stops at the pass's budget and resumes next pass",
    ),
    Mutation(
        name="dead-owner-scan-unlimited",
        file="proxy/store/ledger/lua/sweep.lua",
        old="redis.call('HSCAN', KEYS[3], cursor, 'COUNT', batch)",
        new="redis.call('HSCAN', KEYS[3], cursor, 'COUNT', 100000000)",
        tests=(
            SWEEPER + "test_a_dead_replicas_reclaim_is_bounded_per_pass_and_resumed_until_done",
        ),
        removes="one sweep call scans at most a batch of a tenant's records for dead owners",
    ),
    # -- the merge of issue 15's two halves: generations within the safe range and the index --
    Mutation(
        name="late-commit-sum-overflow-allowed",
        file="proxy/store/ledger/lua/common.lua",
        old="  guard(prefixes, 'spent', added)\n",
        new="",
        tests=(
            SWEEPER + "test_a_late_commit_past_the_safe_range_is_refused_and_writes_nothing[redis]",
        ),
        removes="Redis: a late commit's sums are refused whole out of the safe range",
    ),
    Mutation(
        name="late-commit-checked-while-writing",
        file="proxy/store/ledger/lua/common.lua",
        old=(
            "  guard(prefixes, 'spent', added)\n  for _, p in ipairs(prefixes) do\n"
            "    ROLL.charge(p, added[p], redis.call('HINCRBY', hkey(p), p .. '|spent',"
            " fmt(added[p])))\n"
        ),
        new=(
            "  for _, p in ipairs(prefixes) do\n  guard({ p }, 'spent', added)\n"
            "    ROLL.charge(p, added[p], redis.call('HINCRBY', hkey(p), p .. '|spent',"
            " fmt(added[p])))\n"
        ),
        tests=(
            SWEEPER + "test_a_late_commit_past_the_safe_range_is_refused_and_writes_nothing[redis]",
        ),
        removes="Redis: a late commit checks every line before it writes the first",
    ),
    Mutation(
        name="memory-late-commit-sum-overflow-allowed",
        file="proxy/store/ledger/memory_state.py",
        old='        self.check_range(fields, "spent", added)\n',
        new="",
        tests=(
            SWEEPER
            + "test_a_late_commit_past_the_safe_range_is_refused_and_writes_nothing[memory]",
        ),
        removes="memory: a late commit's sums are refused whole out of the safe range",
    ),
    Mutation(
        name="memory-refused-expiry-no-longer-due",
        file="proxy/store/ledger/sweep_memory.py",
        old="                t.resv_exp[rid] = now + self.stuck_retry_ms\n",
        new="                pass\n",
        tests=(
            SWEEPER + "test_one_tenants_failing_sweep_is_skipped_counted_and_the_pass_goes_on"
            "[memory]",
        ),
        removes="memory: an expiry refused out of the safe range stays due for the next pass",
    ),
    Mutation(
        name="reset-not-indexed",
        file="proxy/store/ledger/lua/tenant_ledger.lua",
        old="    keep(GEN .. 'reset|' .. p, NOW + TOMB)\n  end\n  reindex()\n",
        new="    keep(GEN .. 'reset|' .. p, NOW + TOMB)\n  end\n",
        tests=(SWEEPER + "test_a_resets_generation_entries_are_swept_when_they_expire[redis]",),
        removes="tenant_ledger.lua's reset puts the tenant in the due index",
    ),
    Mutation(
        name="memory-admin-write-not-indexed",
        file="proxy/store/tenants/memory.py",
        old="return self._tenant(tenant)  # as reindex() in the scripts",
        new="return t  # as reindex() in the scripts",
        tests=(SWEEPER + "test_a_resets_generation_entries_are_swept_when_they_expire[memory]",),
        removes="memory: an admin write (reset, credit) marks the tenant for the next sweep",
    ),
    # -- issue 13, closing: the gaps left after the review ---------------------------------
    Mutation(
        name="claude-tool-prompt-reserved-twice",
        file="proxy/metering/shapes/messages.py",
        old="    prompt += definitions_tokens(counter, dict(body), TOOLS_OVERHEAD)\n",
        new=(
            "    prompt += definitions_tokens(counter, dict(body), TOOLS_OVERHEAD)\n"
            '    prompt += 346 if body.get("tools") else 0\n'
        ),
        tests=(CACHE + "test_anthropic_s_tool_prompt_is_reserved_once",),
        removes="Anthropic's tool-use system prompt is reserved once, as tool_prompt_tokens",
    ),
    Mutation(
        name="cache-writes-reserved-at-input",
        file="proxy/metering/caching.py",
        old='    return (0, prompt) if ttl == "1h" else (prompt, 0)',
        new="    return 0, 0",
        tests=(
            CACHE + "test_cache_writes_are_reserved_at_their_ttl_price_and_charged_as_reported",
        ),
        removes="a call with cache_control reserves its prompt at the cache-write price",
    ),
    Mutation(
        name="one-hour-ttl-reserved-at-five-minutes",
        file="proxy/metering/caching.py",
        old="    return max((ttl for _, ttl in found), key=TTLS.index), found[0][0]",
        new='    return "5m", found[0][0]',
        tests=(
            CACHE + "test_cache_writes_are_reserved_at_their_ttl_price_and_charged_as_reported",
        ),
        removes="a one-hour cache breakpoint reserves at the one-hour write price",
    ),
    Mutation(
        name="one-hour-writes-charged-at-five-minutes",
        file="proxy/metering/pricing.py",
        old="        + hour * price.hour_write",
        new="        + hour * _or(price.cache_write, price.input)",
        tests=(
            CACHE + "test_cache_writes_are_reserved_at_their_ttl_price_and_charged_as_reported",
        ),
        removes="reported one-hour cache writes are charged at the one-hour price",
    ),
    Mutation(
        name="unsplit-cache-writes-charged-at-five-minutes",
        file="proxy/metering/pricing.py",
        old='    if price.cache_ttl == "1h":',
        new="    if False:",
        tests=(
            CACHE + "test_cache_writes_reported_without_their_ttl_are_charged_at_the_ttl_asked",
            CACHE + UNEXPLAINED,
        ),
        removes="cache writes reported without their TTL are charged at the longest TTL asked",
    ),
    Mutation(
        name="cache-control-unpriced-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if billables.cache_ttl is not None and price.cache_write is None:",
        new="if False:",
        tests=(
            CACHE + "test_a_cache_write_the_policy_cannot_price_is_refused_and_changes_nothing",
        ),
        removes="cache_control on a model without a cache_write price is refused",
    ),
    Mutation(
        name="usage-chunk-then-eof-charged-the-reservation",
        file="proxy/gateway/streaming.py",
        old="    ended = tracker.done or tracker.final",
        new="    ended = tracker.done",
        tests=(
            ENDS + "test_a_stream_that_ends_cleanly_after_its_usage_chunk_is_charged_its_report",
        ),
        removes="a stream ended cleanly after OpenAI's usage chunk is charged its report",
    ),
    Mutation(
        name="eventless-stream-released",
        file="proxy/gateway/streaming.py",
        old="        await flight.settle(outcome)",
        new="        await (flight.settle(outcome) if tracker.events else flight.release())",
        tests=(ENDS + "test_a_200_stream_without_any_event_is_charged_its_reservation",),
        removes="a 200 stream without a JSON event is charged, not released",
    ),
    Mutation(
        name="done-only-stream-charged-its-text",
        file="proxy/gateway/streaming.py",
        old="    complete = result.complete and ended and tracker.events > 0",
        new="    complete = result.complete and ended",
        tests=(ENDS + "test_a_200_stream_without_any_event_is_charged_its_reservation",),
        removes="a stream of nothing but [DONE] is charged its reservation",
    ),
    Mutation(
        name="deliberate-answer-logged-as-a-failure",
        file="proxy/core/tasks.py",
        old="    if isinstance(exc, ClientError):",
        new="    if False:",
        tests=(ENDS + "test_a_cut_whole_answer_is_charged_and_logged_as_one_warning_line",),
        removes="a call's deliberate 502 is one warning line, not an ERROR with a traceback",
    ),
    Mutation(
        name="stream-lifetime-ignores-first-byte",
        file="proxy/policy/lifetimes.py",
        old='    names = ("connect", "first_byte", last) if stream else ("connect", last)',
        new='    names = ("connect", last) if stream else ("connect", last)',
        tests=(
            ENDS + "test_a_stream_s_first_byte_counts_toward_the_reservation_s_lifetime",
            ENDS + "test_a_route_s_own_first_byte_counts_too",
        ),
        removes="cap_seconds must exceed first_byte + stream_total + drain_after_disconnect",
    ),
    Mutation(
        name="degraded-call-sent-at-the-asked-model-s-tier",
        file="proxy/budget/call.py",
        old="changes: dict[str, Any] = {**self.forced, **variant.writes}",
        new="changes: dict[str, Any] = {**self.forced, **self.asked.writes}",
        tests=(
            "tests/gateway/test_review_attacks.py"
            "::test_a_degraded_call_is_sent_at_the_tier_its_own_model_was_reserved_at",
        ),
        removes="a degraded call is sent at the tier its own model was reserved at",
    ),
    Mutation(
        name="fake-bills-chat-best-of-always",
        file="proxy/testing/fake_upstream.py",
        old='        return endpoint == "completions" or self.settings.chat_best_of',
        new="        return True",
        tests=(f"{CHOICES}::test_best_of_on_chat_is_billed_only_by_a_server_that_takes_it",),
        removes="the fake's chat best_of follows its setting (vLLM-like or not)",
    ),
    # -- issue 13, second review: what hides deeper, what is reported unpriced ------------------
    Mutation(
        name="nested-breakpoints-unseen",
        file="proxy/metering/caching.py",
        old="            for path, block in blocks.objects(body.get(name), name)\n",
        new=(
            "            for path, block in blocks.objects(body.get(name), name)\n"
            '            if path.count(".") < 3\n'
        ),
        tests=(
            NESTED
            + "test_a_nested_breakpoint_is_reserved_at_its_write_price_and_charged_as_billed",
            NESTED + "test_a_nested_breakpoint_on_a_model_without_cache_write_is_refused_naming_it",
        ),
        removes="a cache breakpoint deeper than a tool result's blocks is reserved and refused",
    ),
    Mutation(
        name="nested-documents-unseen",
        file="proxy/metering/billable.py",
        old='.get("type") in INLINE)',
        new='.get("type") in INLINE) and path.count(".") < 3',
        tests=(
            NESTED + "test_a_pdf_in_a_web_fetch_result_is_refused_without_a_documents_price",
            NESTED + "test_a_pdf_in_a_web_fetch_result_reserves_the_model_s_document_tokens",
        ),
        removes="a PDF inside a web fetch result is priced as a document, or refused",
    ),
    Mutation(
        name="nested-images-counted-as-json",
        file="proxy/metering/shapes/messages.py",
        old=(
            "    return counter.count_json(block)"
            " + sum(counter.flat_image(IMAGE_TOKENS) for _ in images)"
        ),
        new="    return counter.count_json(block)",
        tests=(NESTED + "test_images_inside_a_document_of_content_blocks_are_reserved_as_images",),
        removes="images inside a document of content blocks are reserved as images",
    ),
    Mutation(
        name="unpriced-cache-writes-charged-as-input",
        file="proxy/metering/pricing.py",
        old="        + five * price.five_write",
        new="        + five * (price.cache_write or price.input)",
        tests=(
            CACHE + "test_cache_writes_on_a_model_without_a_write_price_are_charged_at_1_25x_input",
            OPENAI_WRITES
            + "test_cache_writes_on_a_model_without_a_write_price_are_charged_at_1_25x_input",
        ),
        removes="cache writes on a model without cache_write are charged at 1.25x input",
    ),
    Mutation(
        name="unexplained-cache-writes-charged-at-five-minutes",
        file="proxy/metering/shapes/messages.py",
        old="    return five, hour, max(0, total - five - hour)",
        new="    return five + max(0, total - five - hour), hour, 0",
        tests=(CACHE + UNEXPLAINED,),
        removes="writes a cache_creation split leaves out are charged at the longest TTL asked",
    ),
    Mutation(
        name="client-tool-tokens-unreserved",
        file="proxy/metering/billable_reserve.py",
        old="    extra += sum(price.client_tool_tokens",
        new="    extra += 0 * sum(price.client_tool_tokens",
        tests=(
            CLIENT_TOOLS + "test_client_tools_are_reserved_at_the_tokens_anthropic_lists_for_them",
            CLIENT_TOOLS
            + "test_the_policy_can_list_a_client_tool_type_and_its_tokens_are_reserved",
        ),
        removes="each Anthropic client tool reserves its type's published prompt tokens",
    ),
    Mutation(
        name="unlisted-client-tool-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="if kind not in price.client_tool_tokens]",
        new="if kind not in price.client_tool_tokens and False]",
        tests=(
            CLIENT_TOOLS + "test_a_client_tool_type_without_listed_tokens_is_refused_naming_it",
        ),
        removes="a client tool type without listed tokens is refused",
    ),
    Mutation(
        name="server-tool-refusal-names-no-type",
        file="proxy/metering/billable_reserve.py",
        old='            sent = "" if kind == tool else f" (type {kind!r})"',
        new='            sent = ""',
        tests=(CLIENT_TOOLS + "test_a_dated_tool_type_nobody_prices_is_refused_naming_the_type",),
        removes="a typed tool nobody prices is refused naming the type sent",
    ),
    Mutation(
        name="openai-chat-cache-writes-dropped",
        file="proxy/metering/token_kinds.py",
        old='    written = min(_count(asked, "cache_write_tokens"), prompt - cached)',
        new="    written = 0",
        tests=(OPENAI_WRITE_PRICE,),
        removes="chat prompt_tokens_details.cache_write_tokens are charged at the write price",
    ),
    Mutation(
        name="openai-responses-cache-writes-dropped",
        file="proxy/metering/shapes/responses.py",
        old='"cache_write_tokens"), prompt - cached)',
        new='"cache_write_tokens"), 0)',
        tests=(OPENAI_WRITE_PRICE,),
        removes="Responses input_tokens_details.cache_write_tokens are charged at the write price",
    ),
    Mutation(
        name="openai-prompt-reserved-below-write-price",
        file="proxy/metering/token_kinds.py",
        old=(
            '        price = derived(price, "writes", '
            "lambda: _with_writes(price, price.five_write))"
        ),
        new="        pass",
        tests=(OPENAI_WRITE_PRICE,),
        removes="an OpenAI prompt reserves at the dearer of input and cache_write",
    ),
    Mutation(
        name="property-sees-nested-breakpoints-unseen",
        file="proxy/metering/caching.py",
        old="            for path, block in blocks.objects(body.get(name), name)\n",
        new=(
            "            for path, block in blocks.objects(body.get(name), name)\n"
            '            if path.count(".") < 3\n'
        ),
        tests=(PROPERTY,),
        removes="the property catches nested cache breakpoints reserved at the input price",
    ),
    Mutation(
        name="property-sees-client-tools-unreserved",
        file="proxy/metering/billable_reserve.py",
        old="    extra += sum(price.client_tool_tokens",
        new="    extra += 0 * sum(price.client_tool_tokens",
        tests=(PROPERTY,),
        removes="the property catches client tools reserved by their JSON alone",
    ),
    Mutation(
        name="property-sees-openai-writes-unreserved",
        file="proxy/metering/token_kinds.py",
        old=(
            '        price = derived(price, "writes", '
            "lambda: _with_writes(price, price.five_write))"
        ),
        new="        pass",
        tests=(PROPERTY,),
        removes="the property catches OpenAI prompts reserved below the write price",
    ),
    Mutation(
        name="property-sees-cache-writes-reserved-at-input",
        file="proxy/metering/caching.py",
        old='    return (0, prompt) if ttl == "1h" else (prompt, 0)',
        new="    return 0, 0",
        tests=(PROPERTY,),
        removes="the property catches cache writes reserved at the input price",
    ),
    Mutation(
        name="property-sees-documents-unreserved",
        file="proxy/metering/billable_reserve.py",
        old="    extra += len(billables.documents) * (price.document_tokens or 0)",
        new="",
        tests=(PROPERTY,),
        removes="the property catches documents reserved by their JSON alone",
    ),
    Mutation(
        name="property-sees-tool-input-unreserved",
        file="proxy/metering/billable_reserve.py",
        old="        extra += billables.pool * max(fees[tool].input_tokens for tool in pooled)",
        new="",
        tests=(PROPERTY,),
        removes="the property catches hosted tool calls' input left out of the reservation",
    ),
    Mutation(
        name="property-sees-batches-unreserved",
        file="proxy/metering/estimate.py",
        old="    return max(n, best_of) * prompts",
        new="    return max(n, best_of)",
        tests=(PROPERTY,),
        removes="the property catches a completions batch reserved as one prompt",
    ),
    Mutation(
        name="property-sees-long-context-unreserved",
        file="proxy/metering/pricing.py",
        old="    if long is None or usage.prompt_tokens <= long.above:",
        new="if True:",
        tests=(PROPERTY,),
        removes="the property catches long prompts priced below their long-context prices",
    ),
    # -- the review of issue 14's boundary (pinned keys, brakes, metrics, replays) -------------
    Mutation(
        name="pinned-key-settles-another-agents-reservation",
        file="proxy/actions/routes.py",
        old="    if record is None or not may_settle(scope, record):",
        new="    if record is None:",
        tests=(
            "tests/gateway/test_key_pins.py"
            "::test_a_pinned_key_cannot_reach_another_agents_reservation_held_only_by_the_tenant",
        ),
        removes="a key pinned to an agent cannot read, commit or release another's reservation",
    ),
    Mutation(
        name="pinned-key-settles-an-unscoped-reservation",
        file="proxy/actions/reserving.py",
        old="""    if record.scope is None:
        return False""",
        new="""    if record.scope is None:
        return True""",
        tests=(
            "tests/gateway/test_key_pins.py"
            "::test_a_pinned_key_cannot_settle_a_reservation_that_kept_no_scope",
        ),
        removes="a reservation that kept no scope fails closed for a pinned key",
    ),
    Mutation(
        name="reservation-scope-not-kept",
        file="proxy/store/ledger/lua/reserve.lua",
        old="if keep_scope then redis.call('HSET', KEYS[3], id .. '|scope', path) end",
        new="",
        tests=(
            "tests/store/test_ledger_contract.py"
            "::test_a_kept_scope_stays_with_its_record_and_goes_with_it",
        ),
        removes="Redis keeps an action reservation's scope beside its record",
    ),
    Mutation(
        name="reservation-scope-outlives-its-record",
        file="proxy/store/ledger/lua/sweep.lua",
        old="    redis.call('HDEL', KEYS[3], id, id .. '|scope')",
        new="    redis.call('HDEL', KEYS[3], id)",
        tests=(
            "tests/store/test_ledger_contract.py"
            "::test_a_kept_scope_stays_with_its_record_and_goes_with_it",
        ),
        removes="the sweep forgets a reservation's kept scope with its record",
    ),
    Mutation(
        name="pinned-keys-share-idempotency-keys",
        file="proxy/gateway/replay.py",
        old="""    if not scope.pins:
        return own""",
        new="""    if True:
        return own""",
        tests=(
            "tests/gateway/test_key_pins.py::test_pinned_keys_keep_idempotency_keys_of_their_own",
        ),
        removes="a key pinned to an agent claims idempotency keys in a namespace of its own",
    ),
    Mutation(
        name="braked-address-lookups-unpaced",
        file="proxy/store/api_keys/failures.py",
        old="""        if not self.addresses.blocked_for(address):
            return 0.0""",
        new="""        if True:
            return 0.0""",
        tests=(
            "tests/gateway/test_failed_auth.py::test_a_braked_address_learns_nothing_beyond_its_pace",
            "tests/gateway/test_failed_auth.py"
            "::test_two_hundred_failures_from_an_address_never_refuse_a_valid_key_from_it",
            "tests/gateway/test_failed_auth.py"
            "::test_a_braked_address_gets_one_lookup_at_a_time_each_holding_its_slot",
        ),
        removes="a braked address's unknown keys are looked up one a second, the rest 429 unseen",
    ),
    Mutation(
        name="braked-failure-answered-before-its-interval",
        file="proxy/gateway/identity.py",
        old="        await asyncio.sleep(keys.failures.lookups.left(hold))\n",
        new="",
        tests=(
            "tests/gateway/test_failed_auth.py::test_a_braked_address_learns_nothing_beyond_its_pace",
        ),
        removes="a braked address's failed lookup is answered when its slot frees, not before",
    ),
    Mutation(
        name="ipv6-failures-counted-per-address",
        file="proxy/gateway/identity.py",
        old="    return peers.counted_as(address, policy.client_ipv6_prefix)",
        new="    return address",
        tests=("tests/gateway/test_failed_auth.py::test_an_ipv6_client_is_counted_by_its_network",),
        removes="an IPv6 client's failed authentications are counted by its /64",
    ),
    Mutation(
        name="metrics-listener-ignores-its-token",
        file="proxy/app.py",
        old="*([scrape.middleware(tokens)] if tokens else [])",
        new="*[]",
        tests=(
            "tests/processes/test_metrics_exposure.py"
            "::test_the_metrics_listener_answers_only_a_bearer_of_the_token",
            "tests/processes/test_metrics_exposure.py"
            "::test_a_gateway_process_serves_metrics_on_its_metrics_listener_only",
        ),
        removes="with CYCLES_METRICS_TOKEN set, the metrics listener serves only its bearer",
    ),
    Mutation(
        name="gateway-metrics-off-loopback-without-a-token",
        file="proxy/settings.py",
        old="    _check_metrics(settings, policy)\n",
        new="",
        tests=(
            "tests/processes/test_metrics_exposure.py"
            "::test_a_gateway_refuses_to_serve_metrics_off_loopback_without_a_token",
            "tests/deploy/test_deploy.py::test_the_proxy_accepts_the_metrics_flags_the_chart_renders",
        ),
        removes="a gateway refuses to serve metrics off loopback without a token",
    ),
    Mutation(
        name="chart-gateway-metrics-without-a-token",
        file="helm/cycles-proxy/templates/deployment.yaml",
        old="(not .Values.metrics.allowUnauthenticated) }}",
        new="false }}",
        tests=(
            "tests/deploy/test_deploy.py"
            "::test_gateway_metrics_ask_for_a_token_that_the_service_monitor_sends",
        ),
        removes="the chart refuses a gateway metrics port without a token or an explicit opt-out",
    ),
    Mutation(
        name="admin-replays-the-previous-releases-answers",
        file="proxy/admin/api.py",
        old="""            if stored.version != VERSION:
                raise _outdated()""",
        new="""            if False:
                raise _outdated()""",
        tests=(
            "tests/admin/test_admin_secrets.py"
            "::test_an_answer_kept_by_the_previous_release_is_never_replayed",
        ),
        removes="an admin answer an earlier release kept (with its secret) is never replayed",
    ),
    # -- issue 14: bounds, odd input, paths up, error bodies, slow clients --------------------
    Mutation(
        name="replay-store-unbounded",
        file="proxy/store/replays.py",
        old="""            MAX_ENTRIES if max_entries is None else max_entries,
            MAX_BYTES if max_bytes is None else max_bytes,""",
        new="""            2**62,
            None,""",
        tests=(
            f"{REPLAY}::test_memory_answer_store_keeps_the_newest_within_its_entries_and_bytes",
            f"{REPLAY}::test_an_answer_dropped_from_the_memory_store_runs_and_is_charged_again",
        ),
        removes="memory:// idempotency answers are bounded in entries and bytes",
    ),
    Mutation(
        name="bounded-table-never-drops",
        file="proxy/core/bounded.py",
        old="            self._drop(next(iter(self._entries)))",
        new="            break",
        tests=(
            f"{REPLAY}::test_memory_answer_store_keeps_the_newest_within_its_entries_and_bytes",
            "tests/processes/test_faults.py::test_local_buckets_keep_only_the_tenants_used_last",
            f"{ADMIN_INPUTS}::test_admin_idempotency_keys_in_memory_are_bounded",
        ),
        removes="a bounded table drops its oldest entries beyond its bound",
    ),
    Mutation(
        name="admin-idempotency-unbounded",
        file="proxy/store/idempotency.py",
        old="""        self._entries: Bounded[str, tuple[float, Stored]] = Bounded(
            max_entries,""",
        new="""        self._entries: Bounded[str, tuple[float, Stored]] = Bounded(
            2**62,""",
        tests=(f"{ADMIN_INPUTS}::test_admin_idempotency_keys_in_memory_are_bounded",),
        removes="memory:// admin idempotency answers are bounded",
    ),
    Mutation(
        name="alert-deliveries-unbounded",
        file="proxy/gateway/alerts.py",
        old="        if _pending() >= MAX_PENDING:",
        new="        if False:",
        tests=(
            "tests/gateway/test_alerts.py::test_deliveries_waiting_on_a_silent_webhook_are_bounded",
        ),
        removes="webhook deliveries in flight are bounded",
    ),
    Mutation(
        name="path-params-not-quoted",
        file="proxy/gateway/handlers.py",
        old='f"/models/{relay.path_segment(model)}"',
        new='f"/models/{model}"',
        tests=(f"{ROUTES}::test_a_path_parameter_reaches_the_upstream_as_the_client_quoted_it",),
        removes="a path parameter is quoted when the upstream URL is built",
    ),
    Mutation(
        name="query-string-decoded-on-the-way-up",
        file="proxy/gateway/handlers.py",
        old="""    if request.rel_url.raw_query_string:
        url += "?" + request.rel_url.raw_query_string""",
        new="""    if request.query_string:
        url += "?" + request.query_string""",
        tests=(f"{ROUTES}::test_a_path_parameter_reaches_the_upstream_as_the_client_quoted_it",),
        removes="the query string goes up as the client quoted it",
    ),
    Mutation(
        name="control-characters-in-paths-allowed",
        file="proxy/gateway/relay.py",
        old="        if odd is not None:",
        new="        if False:",
        tests=(
            f"{ROUTES}::test_control_bidi_and_broken_characters_in_a_path_are_400_and_go_nowhere",
        ),
        removes="control, bidi and separator characters in a path are refused",
    ),
    Mutation(
        name="malformed-deployment-asserts",
        file="proxy/gateway/pipeline.py",
        old="        raise azure.not_a_deployment(request.path)",
        new='        raise AssertionError("app.py routes only budgeted paths here")',
        tests=(
            "tests/gateway/test_azure.py"
            "::test_a_deployment_name_no_upstream_could_list_is_404_and_nothing_reserved",
        ),
        removes="a deployment name no upstream could list is 404, not an assertion",
    ),
    Mutation(
        name="non-finite-admin-amounts-accepted",
        file="proxy/admin/views.py",
        old="not amount.is_finite() or not -MAX_EXPONENT <= amount.adjusted() <= MAX_EXPONENT:",
        new="False:",
        tests=(
            f"{ADMIN_INPUTS}"
            "::test_an_override_or_adjustment_that_is_not_a_finite_amount_is_400_and_changes_nothing",
        ),
        removes="NaN, Infinity and huge exponents are refused as admin amounts",
    ),
    Mutation(
        name="audit-times-unchecked",
        file="proxy/admin/views.py",
        old="    if not _MILLIS.fullmatch(raw) or int(raw) > MAX_MILLIS:",
        new='    if not raw.lstrip("-").isdigit():',
        tests=(f"{ADMIN_INPUTS}::test_audit_times_that_are_not_milliseconds_are_400",),
        removes="audit since/until are milliseconds from 0 to 2**63 - 1",
    ),
    Mutation(
        name="closed-tenant-adjustment-500",
        file="proxy/admin/api.py",
        old="""    except TenantClosed:
        raise Conflict(f"Tenant {record.id!r} is closed; its ledger cannot change.") from None
    return ok(views.balance_json(row, record, plan))""",
        new="""    finally:
        pass
    return ok(views.balance_json(row, record, plan))""",
        tests=(f"{ADMIN_INPUTS}::test_a_closed_tenants_ledger_cannot_be_adjusted_or_reset",),
        removes="adjusting a closed tenant's ledger is 409, not 500",
    ),
    Mutation(
        name="provider-error-relayed-verbatim",
        file="proxy/gateway/pipeline.py",
        old="""            return provider_errors.error_response(
                upstream, body, anthropic=anthropic, headers=flight.verdict.headers
            )""",
        new="""            return _relay_body(upstream, body, flight.verdict)""",
        tests=(PROVIDER_ERRORS,),
        removes="a budgeted call's error body is rewritten, not relayed as the provider sent it",
    ),
    Mutation(
        name="provider-account-detail-kept",
        file="proxy/gateway/provider_errors.py",
        old="""    if ACCOUNT_DETAIL.search(message):
        return _said(status)""",
        new="",
        tests=(PROVIDER_ERRORS,),
        removes="an error message naming the shared account is replaced",
    ),
    Mutation(
        name="passthrough-error-relayed-verbatim",
        file="proxy/gateway/handlers.py",
        old="""    if answer.status >= 400:
        return provider_errors.error_response(answer, data, anthropic=False)""",
        new="",
        tests=(f"{PROVIDER_ERRORS}::test_an_account_answer_on_an_unbudgeted_path_is_scrubbed_too",),
        removes="an unbudgeted path's error body is rewritten too",
    ),
    Mutation(
        name="header-timeout-unbounded",
        file="proxy/gateway/listen.py",
        old="app, access_log=None, keepalive_timeout=header_timeout, lingering_time=lingering",
        new="app, access_log=None, lingering_time=lingering",
        tests=(
            "tests/processes/test_listen.py::test_a_connection_trickling_its_headers_is_closed_after_read_request",
            "tests/processes/test_listen.py"
            "::test_connections_past_the_bound_are_refused_and_clients_are_served_again",
            f"{ADMIN_BOUNDS}::{ADMIN_LISTENER}",
        ),
        removes="a connection must send its request headers within timeouts.read_request",
    ),
    Mutation(
        name="connections-unbounded",
        file="proxy/gateway/listen.py",
        old="        if self.open >= self.limit and not self._evict_idle():",
        new="        if False:",
        tests=(
            "tests/processes/test_listen.py"
            "::test_connections_past_the_bound_are_refused_and_clients_are_served_again",
        ),
        removes="a listener holds at most --max-connections connections",
    ),
    Mutation(
        name="gateway-takes-quitquitquit",
        file="proxy/cli/serve.py",
        old='on_quit = partial(_quit, settings.workers) if policy.identity == "header" else None',
        new="on_quit = partial(_quit, settings.workers)",
        tests=("tests/processes/test_shutdown.py::test_a_gateway_has_no_quitquitquit",),
        removes="only a sidecar's app may stop the proxy with POST /quitquitquit",
    ),
    # -- the review of issue 14's bounds -----------------------------------------------------
    Mutation(
        name="stream-error-event-relayed-verbatim",
        file="proxy/gateway/streaming.py",
        old="""    if stream_errors.is_error(event, obj):
        return obj
""",
        new="",
        tests=(STREAM_ERRORS,),
        removes="an error event in the middle of a stream is scrubbed before it is relayed",
    ),
    Mutation(
        name="provider-message-kept-past-request-errors",
        file="proxy/gateway/provider_errors.py",
        old="    if status not in REQUEST_ERRORS or not isinstance(message, str) or not message:",
        new="    if not isinstance(message, str) or not message:",
        tests=(
            f"{PROVIDER_ERRORS}::test_past_a_request_error_the_message_is_always_the_proxys_own",
        ),
        removes="a 401, 402, 403, 429 or 5xx from the provider gets the proxy's own message",
    ),
    Mutation(
        name="provider-type-and-code-not-allow-listed",
        file="proxy/gateway/provider_errors.py",
        old="""    kind = _known(error.get("type"), KNOWN_TYPES)
    code = _known(error.get("code"), KNOWN_CODES) or GENERIC_CODE""",
        new="""    kind = _token(error.get("type"))
    code = _token(error.get("code"))""",
        tests=(
            f"{PROVIDER_ERRORS}"
            "::test_an_error_about_the_account_keeps_its_status_but_not_its_words_type_or_code",
        ),
        removes="only known error types and codes are relayed (insufficient_quota is not)",
    ),
    Mutation(
        name="provider-param-not-checked-for-account",
        file="proxy/gateway/provider_errors.py",
        old="    return None if ACCOUNT_DETAIL.search(value) else value",
        new="    return value",
        tests=(f"{PROVIDER_ERRORS}::test_a_param_naming_the_account_is_left_out",),
        removes="a param naming the shared account is left out",
    ),
    Mutation(
        name="semicolon-unquoted-in-path-params",
        file="proxy/gateway/relay.py",
        old='''_PCHAR_SAFE = "!$&'()*+,=:@"''',
        new='''_PCHAR_SAFE = "!$&'()*+,;=:@"''',
        tests=(f"{ROUTES}::test_a_path_parameter_reaches_the_upstream_as_the_client_quoted_it",),
        removes="a `;` in a path parameter goes up quoted (`..%3B` never reaches it as `..;`)",
    ),
    Mutation(
        name="upstream-url-requoted",
        file="proxy/gateway/relay.py",
        old="                URL(url, encoded=True),",
        new="                url,",
        tests=(f"{ROUTES}::test_a_path_parameter_reaches_the_upstream_as_the_client_quoted_it",),
        removes="the upstream URL goes as the proxy quoted it, not requoted by yarl",
    ),
    Mutation(
        name="idle-connections-never-evicted",
        file="proxy/gateway/listen.py",
        old="        if self.open >= self.limit and not self._evict_idle():",
        new="        if self.open >= self.limit:",
        tests=(f"{LISTEN}test_idle_keep_alive_connections_give_their_place_to_a_new_client",),
        removes="at the bound, the least recently active idle connection gives up its place",
    ),
    Mutation(
        name="idle-keep-alive-kept-until-read-request",
        file="proxy/gateway/connection.py",
        old="        if quiet and self.idle() and self._transport is not None:",
        new="        if False:",
        tests=(
            f"{LISTEN}test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout",
        ),
        removes="an idle keep-alive connection is closed after --keep-alive-timeout",
    ),
    Mutation(
        name="connections-per-peer-unbounded",
        file="proxy/gateway/connection.py",
        old="        if key is not None and self._gate.peers[key] >= self._gate.limits.per_peer:",
        new="        if False:",
        tests=(f"{LISTEN}test_one_address_holds_at_most_its_share_of_connections",),
        removes="one client address holds at most --max-connections-per-peer connections",
    ),
    Mutation(
        name="trusted-proxy-counted-per-peer",
        file="proxy/core/peers.py",
        old="        if not gateway or (parsed is not None and _trusted(parsed, trusted)):",
        new="        if not gateway:",
        tests=(f"{LISTEN}test_one_address_holds_at_most_its_share_of_connections",),
        removes="a trusted proxy's connections (and a sidecar's) are not bounded per address",
    ),
    Mutation(
        name="place-freed-while-call-runs",
        file="proxy/gateway/connection.py",
        old="""        if not self._busy:
            self._release()
        self.handler.connection_lost(exc)""",
        new="""        self._release()
        self.handler.connection_lost(exc)""",
        tests=(f"{LISTEN}test_calls_whose_clients_left_still_hold_their_place_until_they_end",),
        removes="a closed connection's place is held until its running call ends",
    ),
    Mutation(
        name="whole-answers-unbounded",
        file="proxy/gateway/relay.py",
        old="            return await _read_at_most(response, limit)",
        new="            return await response.read()",
        tests=(
            f"{ROUTES}::test_a_whole_answer_larger_than_max_answer_bytes_is_502_and_charged",
            f"{ROUTES}::test_a_passthrough_answer_larger_than_max_answer_bytes_is_502",
        ),
        removes="a whole answer is read up to limits.max_answer_bytes, beyond it 502 and charged",
    ),
    Mutation(
        name="replay-answers-bounded-only-globally",
        file="proxy/store/replays.py",
        old="        for old in self._tenants.room_for(tenant, size):",
        new="        for old in ():",
        tests=(
            f"{REPLAY}::test_one_tenants_answers_never_push_out_another_tenants_answer_or_claim",
        ),
        removes="memory:// idempotency answers are bounded per tenant: one pushes out only its own",
    ),
    Mutation(
        name="replay-claims-unbounded",
        file="proxy/store/replays.py",
        old=(
            "        if len(self._claims) >= self._max_claims"
            " or self._claimed[tenant] >= self._tenant_claims:"
        ),
        new="        if False:",
        tests=(
            f"{REPLAY}::test_claims_are_never_dropped_and_a_key_past_the_bound_is_refused",
            f"{REPLAY}::test_a_key_past_the_tenants_claims_is_503_and_reserves_nothing",
        ),
        removes="memory:// claims are bounded (a new key refused with 503), never dropped",
    ),
    Mutation(
        name="failed-response-event-unscrubbed",
        file="proxy/gateway/stream_errors.py",
        old="""        or _failed(obj.get("response"))
""",
        new="",
        tests=(
            f"{STREAM_ERRORS}"
            "::test_a_failed_response_reaches_the_tenant_scrubbed_and_charged_what_was_billed",
        ),
        removes="a stream's `response.failed` reaches the tenant with its error scrubbed",
    ),
    Mutation(
        name="failed-response-answer-unscrubbed",
        file="proxy/gateway/pipeline.py",
        old="        shown = stream_errors.scrubbed_answer(",
        new="        shown = body or stream_errors.scrubbed_answer(",
        tests=(
            f"{STREAM_ERRORS}"
            "::test_a_failed_response_reaches_the_tenant_scrubbed_and_charged_what_was_billed",
        ),
        removes="a whole Responses answer with `status: failed` has its error scrubbed",
    ),
    Mutation(
        name="failed-response-request-error-counted-as-5xx",
        file="proxy/gateway/stream_errors.py",
        old="""    **dict.fromkeys(provider_errors.REQUEST_CODES, 400),
""",
        new="",
        tests=(f"{STREAM_ERRORS}::test_a_failed_response_about_the_request_keeps_its_message",),
        removes="a failed response about the request itself (`invalid_prompt`) keeps its words",
    ),
    Mutation(
        name="admin-body-without-deadline",
        file="proxy/admin/api.py",
        old="        request[BODY] = await read_body(request, MAX_BODY_BYTES)",
        new="        request[BODY] = await request.read()",
        tests=(
            f"{ADMIN_BOUNDS}::test_a_body_trickled_past_read_request_is_408_and_changes_nothing"
            "[memory]",
            f"{ADMIN_BOUNDS}::test_an_admin_body_over_its_cap_is_413_and_changes_nothing[memory]",
        ),
        removes="an admin body arrives within read_request (else 408), read as the proxy's is",
    ),
    Mutation(
        name="admin-body-uncapped",
        file="proxy/admin/api.py",
        old="MAX_BODY_BYTES = 64 * 1024\n",
        new="MAX_BODY_BYTES = 64 * 1024 * 1024\n",
        tests=(
            f"{ADMIN_BOUNDS}::test_an_admin_body_over_its_cap_is_413_and_changes_nothing[memory]",
        ),
        removes="an admin body is at most 64 KiB (else 413)",
    ),
    Mutation(
        name="login-form-read-whole",
        file="proxy/admin/dashboard/routes.py",
        old="    raw = await shared.read_body(request, LOGIN_MAX_BYTES)",
        new="    raw = await request.read()",
        tests=(
            f"{ADMIN_BOUNDS}::test_a_body_trickled_past_read_request_is_408_and_changes_nothing"
            "[memory]",
            f"{ADMIN_BOUNDS}::test_a_login_form_over_its_cap_is_413_and_counts_as_no_failed_login",
        ),
        removes="the login form, read before its token is checked, is small and within a deadline",
    ),
    Mutation(
        name="dashboard-body-errors-keep-connection",
        file="proxy/admin/dashboard/routes.py",
        old="        if request.can_read_body:  # only the login form's",
        new="        if False:  # only the login form's",
        tests=(
            f"{ADMIN_BOUNDS}::test_a_body_trickled_past_read_request_is_408_and_changes_nothing"
            "[memory]",
            f"{ADMIN_BOUNDS}::{AT_ONCE}[logout]",
            f"{ADMIN_BOUNDS}::{AT_ONCE}[login-cross-origin]",
        ),
        removes="a dashboard answer leaving its body unread (a 408, 413, 403, logout) closes",
    ),
    Mutation(
        name="admin-listener-lingers-long",
        file="proxy/cli/serve.py",
        old="settings.admin, listen.ADMIN_LINGER_S, ADMIN_FLAG",
        new="settings.admin, listen.LINGER_S, ADMIN_FLAG",
        tests=(f"{ADMIN_BOUNDS}::{ADMIN_LISTENER}",),
        removes="the admin listener closes a connection whose body it refused within 2 s",
    ),
    Mutation(
        name="admin-body-read-before-token",
        file="proxy/admin/dashboard/routes.py",
        old="        return await bearer(request, handler)",
        new="        await request.read()\n        return await bearer(request, handler)",
        tests=(f"{ADMIN_BOUNDS}::{ADMIN_LISTENER}",),
        removes="an admin call without a valid bearer token is refused before its body is read",
    ),
    # -- what the review of issue 15's reservation lifecycle found ---------------------------
    Mutation(
        name="lost-record-commit-frees-others-reservations",
        file="proxy/store/ledger/lua/commit.lua",
        old="if r.state == 'OPEN' then\n  settle_lines(r.prefixes, est, act)\n",
        new="if r.state == 'OPEN' or r.state == 'MISSING' then\n"
        "  settle_lines(r.prefixes, est, act)\n",
        tests=(
            f"{CONTRACT}test_commit_without_record_charges_its_actual_and_frees_nothing[redis]",
            f"{EDGES}test_a_late_commit_after_its_tombstone_is_gone_frees_nothing_others_hold"
            "[redis]",
        ),
        removes="Redis: a commit of a record the store lost charges its actual and frees nothing",
    ),
    Mutation(
        name="memory-lost-record-commit-frees-others-reservations",
        file="proxy/store/ledger/memory.py",
        old="""        if r.state == "OPEN":
            t.settle_lines(r.fields, r.amounts, actual, now, s)""",
        new="""        if r.state in ("OPEN", "MISSING"):
            t.settle_lines(r.fields, r.amounts, actual, now, s)""",
        tests=(
            f"{CONTRACT}test_commit_without_record_charges_its_actual_and_frees_nothing[memory]",
            f"{EDGES}test_a_late_commit_after_its_tombstone_is_gone_frees_nothing_others_hold"
            "[memory]",
        ),
        removes="memory: a commit of a record the store lost charges its actual, frees nothing",
    ),
    Mutation(
        name="lost-record-release-frees-others-reservations",
        file="proxy/store/ledger/lua/release.lua",
        old="  r = missing_record(owner, estimate, 11)\n",
        new="  r = missing_record(owner, estimate, 11)\n"
        "  settle_lines(r.prefixes, parse_amounts(r.amounts), nil)\n",
        tests=(
            f"{CONTRACT}test_release_without_record_frees_nothing_and_leaves_a_tombstone[redis]",
        ),
        removes="Redis: a release of a record the store lost changes no sum",
    ),
    Mutation(
        name="memory-lost-record-release-frees-others-reservations",
        file="proxy/store/ledger/memory.py",
        old="            r = self._missing(reservation)\n",
        new="            r = self._missing(reservation)\n"
        "            t.settle_lines(r.fields, r.amounts, None, now, self.settings)\n",
        tests=(
            f"{CONTRACT}test_release_without_record_frees_nothing_and_leaves_a_tombstone[memory]",
        ),
        removes="memory: a release of a record the store lost changes no sum",
    ),
    Mutation(
        name="known-only-commit-settles-an-unknown-id",
        file="proxy/store/ledger/lua/commit.lua",
        old="elseif has_flag(flags, 'k') then\n  return { 'MISSING', '0', '-' }\n",
        new="",
        tests=(
            f"{EDGES}test_a_settle_that_asks_for_a_known_record_writes_nothing_for_an_unknown_id"
            "[redis]",
            f"{EDGES}test_an_action_settle_of_a_record_gone_since_its_lookup_is_404_and_changes"
            "_nothing[redis]",
        ),
        removes="Redis: a commit told to settle only a known record writes nothing for another",
    ),
    Mutation(
        name="memory-known-only-commit-settles-an-unknown-id",
        file="proxy/store/ledger/memory.py",
        old="""        r = t.resv.get(reservation.id)
        if r is None and known_only:
            return SettleResult("MISSING", False, {})
        r = r or self._missing(reservation)""",
        new="""        r = t.resv.get(reservation.id)
        r = r or self._missing(reservation)""",
        tests=(
            f"{EDGES}test_a_settle_that_asks_for_a_known_record_writes_nothing_for_an_unknown_id"
            "[memory]",
            f"{EDGES}test_an_action_settle_of_a_record_gone_since_its_lookup_is_404_and_changes"
            "_nothing[memory]",
        ),
        removes="memory: a commit told to settle only a known record writes nothing for another",
    ),
    Mutation(
        name="known-only-release-tombstones-an-unknown-id",
        file="proxy/store/ledger/lua/release.lua",
        old="elseif has_flag(flags, 'k') then\n  return { 'MISSING', '0', '-' }\n",
        new="",
        tests=(
            f"{EDGES}test_a_settle_that_asks_for_a_known_record_writes_nothing_for_an_unknown_id"
            "[redis]",
        ),
        removes="Redis: a release told to settle only a known record writes nothing for another",
    ),
    Mutation(
        name="action-commit-of-a-lost-record-charged",
        file="proxy/actions/routes.py",
        old="        reservation, actual, final_release=True, known_only=True, event=event\n",
        new="        reservation, actual, final_release=True, event=event\n",
        tests=(
            f"{EDGES}test_an_action_settle_of_a_record_gone_since_its_lookup_is_404_and_changes"
            "_nothing",
        ),
        removes="an action commit of a record gone since its lookup is 404 and writes nothing",
    ),
    Mutation(
        name="action-release-of-a-lost-record-written",
        file="proxy/actions/routes.py",
        old="        reservation_of(record, tenant), known_only=True, event=event\n",
        new="        reservation_of(record, tenant), event=event\n",
        tests=(
            f"{EDGES}test_an_action_settle_of_a_record_gone_since_its_lookup_is_404_and_changes"
            "_nothing",
        ),
        removes="an action release of a record gone since its lookup is 404 and writes nothing",
    ),
    Mutation(
        name="action-commit-charged-after-its-expiry-release",
        file="proxy/store/ledger/lua/commit.lua",
        old="local released = r.state == 'RELEASED' or r.state == 'EXPIRED_RELEASED'\n",
        new="local released = r.state == 'RELEASED'\n",
        tests=(
            f"{EDGES}test_a_final_commit_after_a_release_at_expiry_charges_nothing[redis]",
            f"{EDGES}test_an_action_commit_racing_its_release_at_expiry_is_409_and_charges"
            "_nothing[redis]",
        ),
        removes="Redis: an action's release at expiry is final, as its release is",
    ),
    Mutation(
        name="memory-action-commit-charged-after-its-expiry-release",
        file="proxy/store/ledger/memory.py",
        old='        if r.state in ("RELEASED", "EXPIRED_RELEASED") and final_release:',
        new='        if r.state == "RELEASED" and final_release:',
        tests=(
            f"{EDGES}test_a_final_commit_after_a_release_at_expiry_charges_nothing[memory]",
            f"{EDGES}test_an_action_commit_racing_its_release_at_expiry_is_409_and_charges"
            "_nothing[memory]",
        ),
        removes="memory: an action's release at expiry is final, as its release is",
    ),
    Mutation(
        name="action-commit-after-its-expiry-release-answered",
        file="proxy/actions/reserving.py",
        old='    if record.state == "EXPIRED_RELEASED":\n',
        new="    if False:\n",
        tests=(f"{ACTIONS}::test_abandoned_reservation_is_released_when_the_policy_says_so",),
        removes="an action commit after its release at expiry is 409",
    ),
    Mutation(
        name="stuck-expiry-stops-the-tenants-sweep",
        file="proxy/store/ledger/lua/sweep.lua",
        old="if not expire(id, r) then redis.call('ZADD', KEYS[4], fmt(NOW + retry), id) end",
        new="if not expire(id, r) then break end",
        tests=(f"{EDGES}test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries[redis]",),
        removes="Redis: one stuck expiry never holds back the tenant's other expiries",
    ),
    Mutation(
        name="stuck-expiry-stays-first-in-line",
        file="proxy/store/ledger/lua/sweep.lua",
        old="if not expire(id, r) then redis.call('ZADD', KEYS[4], fmt(NOW + retry), id) end",
        new="expire(id, r)",
        tests=(f"{EDGES}test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries[redis]",),
        removes="Redis: a stuck expiry is due again later, not at once (it would fill batches)",
    ),
    Mutation(
        name="memory-stuck-expiry-stops-the-tenants-sweep",
        file="proxy/store/ledger/sweep_memory.py",
        old="                    retry.append(rid)  # nothing was written: it stays OPEN, "
        "due again later\n                    continue\n",
        new="                    t.resv_exp[rid] = at\n                    raise\n",
        tests=(
            f"{EDGES}test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries[memory]",
        ),
        removes="memory: one stuck expiry never holds back the tenant's other expiries",
    ),
    Mutation(
        name="stuck-expiry-not-reported",
        file="proxy/store/ledger/sweep_redis.py",
        old="        self.stuck(tenant, swept.stuck)\n        return swept.resolved\n",
        new="        return swept.resolved\n",
        tests=(f"{EDGES}test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries[redis]",),
        removes="Redis: a stuck expiry is logged and counted each time it is tried",
    ),
    Mutation(
        name="memory-stuck-expiry-not-reported",
        file="proxy/store/ledger/sweep_memory.py",
        old="            self.stuck(tenant, swept[1])\n",
        new="",
        tests=(
            f"{EDGES}test_a_stuck_expiry_does_not_hold_back_the_tenants_other_expiries[memory]",
        ),
        removes="memory: a stuck expiry is logged and counted each time it is tried",
    ),
    Mutation(
        name="reclaim-restarts-when-the-dead-change",
        file="proxy/store/ledger/sweep_redis.py",
        old="            r.dead = tuple(o for o in r.dead if o in dead)  # one alive again is left "
        "alone\n            if not r.dead:\n",
        new="            if r.dead != dead:\n",
        tests=(f"{EDGES}test_a_dead_replicas_reclaim_finishes_while_other_replicas_keep_dying",),
        removes="a dead replica's reclaim goes on when another replica dies, never restarts",
    ),
    Mutation(
        name="repeat-of-a-settled-reservation-allowed",
        file="proxy/store/ledger/common.py",
        old="        allowed=reservation is not None and settled is None,\n",
        new="        allowed=reservation is not None,\n",
        tests=(f"{EDGES}test_a_repeated_reserve_of_a_settled_reservation_is_not_allowed",),
        removes="a reserve repeated under a settled reservation's id is not allowed",
    ),
    Mutation(
        name="repeat-of-a-settled-reservation-not-told",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  local settled = (r.state ~= 'OPEN') and r.state or nil\n",
        new="  local settled = nil\n",
        tests=(f"{EDGES}test_a_repeated_reserve_of_a_settled_reservation_is_not_allowed[redis]",),
        removes="Redis: a repeat of a settled reservation says what it became",
    ),
    Mutation(
        name="memory-repeat-of-a-settled-reservation-not-told",
        file="proxy/store/ledger/memory_lines.py",
        old='    settled = None if record.state == "OPEN" else record.state\n',
        new="    settled = None\n",
        tests=(f"{EDGES}test_a_repeated_reserve_of_a_settled_reservation_is_not_allowed[memory]",),
        removes="memory: a repeat of a settled reservation says what it became",
    ),
    Mutation(
        name="memory-failed-expiry-no-longer-due",
        file="proxy/store/ledger/sweep_memory.py",
        old="t.resv_exp[rid] = at  # nothing was written: it stays OPEN and due\n",
        new="pass\n",
        tests=(
            SWEEPER + "test_one_tenants_failing_sweep_is_skipped_counted_and_the_pass_goes_on"
            "[memory]",
        ),
        removes="memory: an expiry that failed (a damaged store) stays due for the next pass",
    ),
    # -- the package's import direction (issue 16) ------------------------------------------
    Mutation(
        name="store-may-import-the-policy",
        file="pyproject.toml",
        old='source_modules = ["proxy.store"]',
        new='source_modules = ["proxy.client"]',
        tests=("tests/test_import_layers.py",),
        removes="lint-imports refuses a store module that imports anything but core",
    ),
    Mutation(
        name="long-context-drops-media-raise",
        file="proxy/metering/token_kinds.py",
        old="        long = dataclasses.replace(long, input=long_input, output=long_output)",
        new="        pass",
        tests=(LONG_MEDIA,),
        removes="a long prompt with media reserves its long-context rates raised to media prices",
    ),
    Mutation(
        name="property-sees-long-context-media-unraised",
        file="proxy/metering/token_kinds.py",
        old="        long = dataclasses.replace(long, input=long_input, output=long_output)",
        new="        pass",
        tests=(PROPERTY,),
        removes="the property catches long prompts with media reserved at long-context rates",
    ),
    Mutation(
        name="unpriced-openai-writes-unreserved",
        file="proxy/metering/token_kinds.py",
        old="    if endpoint in WRITES_CACHE:\n",
        new="    if endpoint in WRITES_CACHE and price.cache_write is not None:\n",
        tests=(
            OPENAI_WRITES
            + "test_an_openai_prompt_on_a_model_without_a_write_price_is_reserved_at_1_25x_input",
            OPENAI_WRITES
            + "test_cache_writes_on_a_model_without_a_write_price_are_charged_at_1_25x_input",
        ),
        removes="an OpenAI prompt without a cache_write price reserves at the default write price",
    ),
    Mutation(
        name="property-sees-unpriced-openai-writes-unreserved",
        file="proxy/metering/token_kinds.py",
        old="    if endpoint in WRITES_CACHE:\n",
        new="    if endpoint in WRITES_CACHE and price.cache_write is not None:\n",
        tests=(PROPERTY,),
        removes="the property catches writes on a model without cache_write reserved at input",
    ),
    Mutation(
        name="unreported-prompt-charged-at-plain-input",
        file="proxy/gateway/settle.py",
        old="    counted = amounts(sent.reserved_price, sent.unreported_usage(",
        new="    counted = amounts(sent.price, sent.unreported_usage(",
        tests=(
            OPENAI_WRITES + "test_a_stream_without_usage_is_charged_its_prompt_at_the_write_price",
        ),
        removes="a stream without a usage report is charged its prompt at the price it reserved",
    ),
    Mutation(
        name="whole-200-error-unscrubbed",
        file="proxy/gateway/stream_errors.py",
        old="""    if b'"error"' not in body:
""",
        new="""    if endpoint != "responses" or b'"failed"' not in body:
""",
        tests=(
            f"{STREAM_ERRORS}::{WHOLE_200}[memory-chat]",
            f"{STREAM_ERRORS}::{WHOLE_200}[memory-responses]",
        ),
        removes="a whole 200 with an `error` at its top (any endpoint, any status) is scrubbed",
    ),
    Mutation(
        name="whole-200-unreadable-error-relayed",
        file="proxy/gateway/stream_errors.py",
        old="        return provider_errors.rewrite(502, body,",
        new="        return body or provider_errors.rewrite(502, body,",
        tests=(
            f"{STREAM_ERRORS}::test_a_whole_200_naming_an_error_that_is_not_json_fails_closed"
            "[memory]",
        ),
        removes="a whole 200 naming an error that is not a JSON object is replaced (fail closed)",
    ),
    Mutation(
        name="rewritten-answer-keeps-provider-type",
        file="proxy/gateway/pipeline.py",
        old="    if rewritten:",
        new="    if False:",
        tests=(
            f"{STREAM_ERRORS}::test_a_whole_200_naming_an_error_that_is_not_json_fails_closed"
            "[memory]",
        ),
        removes="a whole answer the proxy rewrote is typed application/json",
    ),
    Mutation(
        name="failed-response-event-error-beside-unscrubbed",
        file="proxy/gateway/stream_errors.py",
        old='        if obj.get("error") is not None:  # an error beside',
        new="        if False:  # an error beside",
        tests=(
            f"{STREAM_ERRORS}"
            "::test_a_failed_response_event_with_an_error_beside_it_has_both_scrubbed",
        ),
        removes="a `response.failed` event's own top-level `error` is scrubbed with the response's",
    ),
    Mutation(
        name="admin-refusal-keeps-connection",
        file="proxy/admin/auth.py",
        old="        return await closed_after(request, response) if request.can_read_body",
        new="        return response if True",
        tests=(f"{ADMIN_BOUNDS}::{AT_ONCE}[no-token]", f"{ADMIN_BOUNDS}::{AT_ONCE}[read-token]"),
        removes="a bearer refusal with its body unread closes the connection, the body unread",
    ),
    Mutation(
        name="refusal-lingers-reading-body",
        file="proxy/admin/auth.py",
        old="    request.protocol.force_close()  # the transport sends",
        new="    pass  # the transport sends",
        tests=(f"{ADMIN_BOUNDS}::{AT_ONCE}[no-token]", f"{ADMIN_BOUNDS}::{AT_ONCE}[logout]"),
        removes="a refusal closes at once, not after reading and dropping the body (lingering)",
    ),
    Mutation(
        name="admin-expect-invites-any-body",
        file="proxy/admin/app.py",
        old="    app.add_routes(auth.expecting(routes, expect))",
        new="    app.add_routes(routes)",
        tests=(f"{ADMIN_BOUNDS}::{EXPECT}[no-token]", f"{ADMIN_BOUNDS}::{EXPECT}[over-the-cap]"),
        removes="`Expect: 100-continue` is answered 100 only for an admitted call within the cap",
    ),
    Mutation(
        name="admin-no-route-expect-invites-any-body",
        file="proxy/admin/app.py",
        old='    app.router.add_route("*", "/{tail:.*}", no_route, expect_handler=expect)',
        new="",
        tests=(f"{ADMIN_BOUNDS}::{EXPECT}[no-route]",),
        removes="`Expect: 100-continue` to no admin route gets the token check too (not aiohttp's)",
    ),
    Mutation(
        name="dashboard-expect-invites-any-body",
        file="proxy/admin/dashboard/routes.py",
        old="name=PREFIX + name, expect_handler=_expect(public)",
        new="name=PREFIX + name",
        tests=(f"{ADMIN_BOUNDS}::{EXPECT}[login-over-its-cap]",),
        removes="`Expect: 100-continue` on the dashboard invites only a login form within 4 KiB",
    ),
    Mutation(
        name="login-throttle-checked-before-form-only",
        file="proxy/admin/dashboard/routes.py",
        old="""    now = time.monotonic()
    if ctx.gate.throttle.blocked(address, now):
        return _throttled(ctx)
""",
        new="""    now = time.monotonic()
""",
        tests=(
            f"{ADMIN_BOUNDS}::test_concurrent_logins_from_one_address_get_no_guess_past_its_limit",
        ),
        removes="concurrent logins from one address get no guess past the login throttle",
    ),
    # -- a dead replica's reclaim (issue 15, review) -----------------------------------------
    Mutation(
        name="reclaim-goes-on-for-a-replica-alive-again",
        file="proxy/store/ledger/sweep_redis.py",
        old="            r.dead = tuple(o for o in r.dead if o in dead)  # one alive again is left "
        "alone\n",
        new="            pass\n",
        tests=(
            f"{EDGES}test_a_replica_alive_again_keeps_its_calls_though_its_reclaim_had_begun"
            "[redis]",
        ),
        removes="Redis: a reclaim in progress leaves alone a replica that heartbeats again",
    ),
    Mutation(
        name="memory-reclaim-goes-on-for-a-replica-alive-again",
        file="proxy/store/ledger/sweep_memory.py",
        old="            r.dead = tuple(o for o in r.dead if o in dead)  # one alive again is left "
        "alone\n",
        new="            pass\n",
        tests=(
            f"{EDGES}test_a_replica_alive_again_keeps_its_calls_though_its_reclaim_had_begun"
            "[memory]",
        ),
        removes="memory: a reclaim in progress leaves alone a replica that heartbeats again",
    ),
    Mutation(
        name="memory-reclaim-restarts-every-pass",
        file="proxy/store/ledger/sweep_memory.py",
        old="        r = self._reclaim\n",
        new="        r = self._reclaim = None\n",
        tests=(
            "tests/store/test_reclaim.py::test_a_reclaim_out_of_time_resumes_where_it_stopped"
            "[memory]",
        ),
        removes="memory: a dead replica's reclaim out of time resumes where it stopped",
    ),
    Mutation(
        name="dead-owners-stuck-call-skips-the-rest",
        file="proxy/store/ledger/lua/sweep.lua",
        old="if r.state == 'OPEN' and dead[r.owner] then expire(records[i], r) end",
        new="if r.state == 'OPEN' and dead[r.owner] and not expire(records[i], r) then break end",
        tests=(
            "tests/store/test_reclaim.py::"
            "test_a_dead_replicas_stuck_call_holds_back_none_of_its_others[redis]",
        ),
        removes="Redis: a dead replica's call it cannot charge holds back none of its others",
    ),
    Mutation(
        name="memory-dead-owners-stuck-call-skips-the-rest",
        file="proxy/store/ledger/sweep_memory.py",
        old="                        stuck = stuck or exc  # it stays OPEN until its deadline\n"
        "                        continue\n",
        new="                        stuck = stuck or exc\n                        break\n",
        tests=(
            "tests/store/test_reclaim.py::"
            "test_a_dead_replicas_stuck_call_holds_back_none_of_its_others[memory]",
        ),
        removes="memory: a dead replica's call it cannot charge holds back none of its others",
    ),
    Mutation(
        name="reclaim-walks-the-index-by-due-time",
        file="proxy/store/ledger/sweep_redis.py",
        old=(
            "        found, rows = await self._client.zscan("
            "shard, cursor, count=self.reclaim_scan)\n"
            "        due = [str(t) for t, score in cast(list[tuple[str, float]], rows)"
            " if score <= upto]\n"
            "        return int(found), due\n"
        ),
        new="""        rows = await self._client.zrangebyscore(
            shard, cursor or "-inf", upto, start=0, num=self.reclaim_scan, withscores=True
        )
        found = int(rows[-1][1]) + 1 if len(rows) == self.reclaim_scan else 0
        return found, [str(t) for t, _ in rows]
""",
        tests=(
            "tests/store/test_reclaim.py::"
            "test_a_tenant_whose_due_time_moves_during_a_reclaim_is_still_reclaimed[redis]",
        ),
        removes="Redis: a tenant whose due time moves behind a reclaim's position is reclaimed",
    ),
    Mutation(
        name="reclaim-forgets-the-dead-before-reading-the-whole-index",
        file="proxy/store/ledger/sweep_redis.py",
        old="        if not r.finished():\n",
        new="        if False:\n",
        tests=(
            "tests/store/test_reclaim.py::"
            "test_a_reclaim_out_of_time_while_reading_the_index_resumes_there",
        ),
        removes="Redis: a reclaim out of time while reading the index resumes there",
    ),
    # -- the layout: modules and functions stay small (issue 16) -------------------------------
    Mutation(
        name="layout-admits-a-51-line-function",
        file="proxy/metering/caching.py",
        old="    return str(ttl)\n",
        new="    return str(ttl)\n\n\ndef _padded() -> None:\n" + "    pass\n" * 50,
        tests=("tests/test_layout.py::test_no_function_is_over_50_lines",),
        removes="the layout test refuses a function over 50 lines",
    ),
    Mutation(
        name="layout-admits-a-401-line-module",
        file="proxy/metering/caching.py",
        old="    return str(ttl)\n",
        new="    return str(ttl)\n" + "# padding\n" * 400,
        tests=("tests/test_layout.py::test_no_module_is_over_400_lines",),
        removes="the layout test refuses a module over 400 lines",
    ),
    # -- message fields, report-less streams, long-context defaults, images (issue 13) --------
    Mutation(
        name="message-refusal-field-unreserved",
        file="proxy/metering/estimate.py",
        old="    return tokens + other_fields(counter, message, _SHAPED_FIELDS)\n",
        new="    return tokens\n",
        tests=(
            MESSAGE_COSTS + "test_a_refusal_sent_back_is_reserved_and_charged_what_was_billed",
            MESSAGE_COSTS + "test_a_refusal_cannot_carry_a_tenant_past_its_limit",
        ),
        removes="a chat message's fields besides its content (an assistant's refusal) are reserved",
    ),
    Mutation(
        name="message-fields-unchecked",
        file="proxy/budget/call.py",
        old="    check_entries(body, endpoint.name, policy.request_fields)\n",
        new="",
        tests=(MESSAGE_COSTS + MESSAGE_REFUSED,),
        removes="a message field or input item the proxy cannot price is 400 unpriced_feature",
    ),
    Mutation(
        name="message-audio-reference-forwarded",
        file="proxy/metering/message_fields.py",
        old='    "audio": _refused(\n',
        new='    "audio": _modelled(\n',
        tests=(MESSAGE_COSTS + MESSAGE_REFUSED,),
        removes="an assistant message's audio reference (billed as unseen input) is refused",
    ),
    Mutation(
        name="responses-item-reference-forwarded",
        file="proxy/metering/message_fields.py",
        old='    "item_reference": _refused(_STORED),\n',
        new='    "item_reference": _modelled(_STORED),\n',
        tests=(MESSAGE_COSTS + MESSAGE_REFUSED,),
        removes="a Responses item_reference (a stored item the proxy cannot see) is refused",
    ),
    Mutation(
        name="unreported-stream-drops-reserved-extras",
        file="proxy/gateway/settle.py",
        old="sent.unreported_usage(outcome.counted_completion))",
        new="Usage(sent.prompt_tokens, outcome.counted_completion))",
        tests=(UNREPORTED.removesuffix("::"),),
        removes="a stream without usage is charged the tool calls and cache writes it reserved",
    ),
    Mutation(
        name="report-less-count-scaled-past-the-limit",
        file="proxy/budget/call.py",
        old="        return max(counted, min(scaled, self.completion_bound))\n",
        new="        return scaled\n",
        tests=(UNREPORTED + "test_counted_text_past_the_limit_is_charged_at_most_the_limit",),
        removes="a report-less count scaled to the tokenizer stops at the limit sent",
    ),
    Mutation(
        name="long-context-defaults-unchecked",
        file="proxy/policy/features.py",
        old="        if above >= below:\n",
        new="        if above >= below or not given:\n",
        tests=(
            "tests/policy/test_price_policy.py::test_a_broken_price_field_names_its_line_and_"
            "what_to_write",
        ),
        removes="a long-context price left at its default may not be below the model's own",
    ),
    Mutation(
        name="gpt-4o-mini-images-at-gpt-4o-rule",
        file="proxy/policy/features.py",
        old='    "gpt-4o-mini": Fraction(5667, 170),\n',
        new='    "gpt-4o-mini": Fraction(1),\n',
        tests=(
            IMAGES
            + "test_an_image_on_gpt_4o_mini_is_reserved_at_its_published_rule_without_a_factor",
        ),
        removes="gpt-4o-mini's images are reserved at its published rule without a factor",
    ),
    Mutation.never(
        name="images-without-a-rule-forwarded",
        file="proxy/metering/billable_reserve.py",
        old="    if billables.images and price.image_token_factor is None:\n",
        tests=(
            IMAGES + "test_an_image_on_a_model_without_an_image_rule_is_refused_and_changes_"
            "nothing",
        ),
        removes="an image on a model whose image rule the proxy does not know is refused",
    ),
    Mutation.never(
        name="image-factor-below-the-rule-unwarned",
        file="proxy/policy/advice.py",
        old="        if published is not None and factor is not None and factor < published:\n",
        tests=(
            "tests/policy/test_image_factors.py::test_check_shows_which_models_refuse_images_and_"
            "warns_of_a_factor_below_the_rule",
        ),
        removes="check warns of an image_token_factor written below the published rule",
    ),
    Mutation(
        name="store-boundary-not-applied",
        file="proxy/store/boundary.py",
        old="        if not cls.boundary.rules:\n            return\n",
        new="        if True:\n            return\n",
        tests=(
            "tests/store/test_boundary.py",
            "tests/store/test_ledger_redis.py::test_ledger_unavailable_when_nothing_listens",
        ),
        removes="every Redis store maps redis-py's exceptions to ours at its public methods",
    ),
    Mutation(
        name="key-store-opens-a-client-of-its-own",
        file="proxy/store/open.py",
        old="        api_keys = RedisKeyStore(url, clock, client=client)\n",
        new="        api_keys = RedisKeyStore(url, clock)\n",
        tests=(
            "tests/store/test_open.py"
            "::test_the_stores_on_one_redis_share_one_client_beside_the_scripts_wire",
        ),
        removes="the stores on one Redis share one client",
    ),
    Mutation(
        name="memory-tenants-apart-from-the-ledger",
        file="proxy/store/open.py",
        old="        tenants=MemoryTenants(ledger.state),\n",
        new="        tenants=MemoryTenants(MemoryLedger(settings).state),\n",
        tests=(
            "tests/store/test_open.py::test_what_the_tenant_store_writes_the_ledger_reserves_by"
            "[memory]",
        ),
        removes="memory://'s tenant store works on the ledger's state",
    ),
    Mutation(
        name="replay-claim-decodes-the-kept-answer",
        file="proxy/store/replays.py",
        old="            **{NEVER_DECODE: []},\n",
        new="",
        tests=(
            "tests/store/test_open.py"
            "::test_the_stores_on_one_redis_share_one_client_beside_the_scripts_wire",
        ),
        removes="a kept answer is read back as the bytes it was, on the shared decoding client",
    ),
    Mutation(
        name="item-images-counted-by-their-json",
        file="proxy/metering/shapes/responses.py",
        old="        return TOKENS_PER_MESSAGE + item_media.media_tokens(counter, item, path)\n",
        new="        return TOKENS_PER_MESSAGE + counter.count_json(item)\n",
        tests=(
            ITEM_IMAGES + "test_images_in_tool_outputs_and_screenshots_are_reserved_as_images",
            ITEM_MEDIA + "test_a_screenshot_is_counted_by_the_tile_rule_not_as_its_base64",
        ),
        removes="images in Responses items other than messages are reserved by the tile rule",
    ),
    Mutation(
        name="screenshot-not-an-image",
        file="proxy/metering/shapes/item_media.py",
        old=(
            "        if id(obj) in screenshots:\n"
            "            _detail(obj, where)\n"
            "            found.append(Image(where, _url(obj), None))\n"
            "        elif kind in IMAGE_TYPES:\n"
        ),
        new='        if kind in IMAGE_TYPES and kind != "computer_screenshot":\n',
        tests=(
            ITEM_IMAGES + "test_an_item_s_image_on_a_model_without_an_image_rule_is_refused_"
            "naming_it[memory-computer_call_output]",
            ITEM_IMAGES
            + "test_images_in_tool_outputs_and_screenshots_are_reserved_as_images[memory-whole]",
        ),
        removes="a computer_call_output screenshot is an image: tile rule, refused without one",
    ),
    Mutation(
        name="stored-prompt-variables-unpriced",
        file="proxy/metering/billable.py",
        old='    places = (("input", body.get("input")), ("prompt", body.get("prompt")))\n',
        new='    places = (("input", body.get("input")),)\n',
        tests=(ITEM_IMAGES + "test_a_stored_prompt_s_image_and_file_variables_are_reserved",),
        removes="a stored prompt's file variables reserve document tokens",
    ),
    Mutation.never(
        name="stored-prompt-variables-uncounted",
        file="proxy/metering/shapes/responses.py",
        old='    if body.get("prompt") is not None:\n',
        tests=(ITEM_IMAGES + "test_a_stored_prompt_s_image_and_file_variables_are_reserved",),
        removes="a stored prompt's variables count as the prompt, an image one by the tile rule",
    ),
    Mutation(
        name="item-image-payload-counted-as-text",
        file="proxy/metering/shapes/item_media.py",
        old='        return {"type": value["type"]}\n',
        new="        return value\n",
        tests=(ITEM_MEDIA + "test_a_screenshot_is_counted_by_the_tile_rule_not_as_its_base64",),
        removes="an item's image is counted by the tile rule, its base64 not also as text",
    ),
    # -- issue 16: a port already in use is one line and exit 2 --------------------------------
    Mutation(
        name="port-in-use-is-a-traceback",
        file="proxy/cli/serve.py",
        old="        if isinstance(exc, OSError) and is_in_use(exc):\n"
        "            raise in_use(*listener.address, listener.flag) from None\n",
        new="",
        tests=(
            "tests/processes/test_ports.py::test_a_second_serve_on_a_taken_admin_port_says_so_in"
            "_one_line_and_exits_2",
            "tests/processes/test_ports.py::test_a_second_serve_on_a_taken_proxy_port_says_so_in"
            "_one_line_and_exits_2",
        ),
        removes="a listener whose port another process holds says so in one line, exit 2",
    ),
    Mutation(
        name="workers-port-in-use-is-a-traceback",
        file="proxy/cli/ports.py",
        old="            if is_in_use(exc):\n"
        "                raise in_use(host, port, flag) from None\n",
        new="",
        tests=(
            "tests/processes/test_ports.py::test_workers_on_a_taken_port_say_so_once_and_exit_2",
        ),
        removes="under --workers the parent finds a taken port once, before any worker starts",
    ),
    Mutation(
        name="log-filter-assumes-an-exc-info-tuple",
        file="proxy/gateway/logs.py",
        old="if isinstance(record.exc_info, tuple) and record.exc_info[0] is not None:",
        new="if record.exc_info is not None:",
        tests=(
            "tests/gateway/test_observability.py::test_a_record_logged_with_exc_info_false_is"
            "_written_not_a_crash",
        ),
        removes="the redaction filter writes a record logged with exc_info=False",
    ),
    # -- issue 16: the pipeline's events ---------------------------------------------------------
    Mutation(
        name="failing-subscriber-fails-the-call",
        file="proxy/gateway/events.py",
        old="""            try:
                subscriber(event)
            except Exception:
                log.exception("a subscriber to %s failed", type(event).__name__)""",
        new="""            subscriber(event)""",
        tests=(
            "tests/gateway/test_events.py"
            "::test_a_failing_subscriber_never_changes_the_answer_or_the_charge",
        ),
        removes="a subscriber that fails never changes a call's answer or its charge",
    ),
    Mutation(
        name="settled-call-not-told",
        file="proxy/gateway/settle.py",
        old="self.events.emit(settled)",
        new="None",
        tests=(
            "tests/gateway/test_events.py"
            "::test_a_call_is_told_to_subscribers_decided_then_settled_at_what_the_ledger_charged",
            "tests/gateway/test_observability.py",
        ),
        removes="a settled call is told to the subscribers (its log line, metrics, alerts)",
    ),
    Mutation(
        name="decided-call-not-told",
        file="proxy/gateway/pipeline.py",
        old=(
            "events.emit(CallDecided(request, scope.tenant, reserved, routed, result, "
            "admitted.reserving))"
        ),
        new="None",
        tests=(
            "tests/gateway/test_events.py"
            "::test_a_call_is_told_to_subscribers_decided_then_settled_at_what_the_ledger_charged",
            "tests/gateway/test_observability.py",
        ),
        removes="a decided call is told to the subscribers (its log line, metrics)",
    ),
    Mutation(
        name="denied-call-not-told",
        file="proxy/gateway/pipeline.py",
        old=(
            "        events.emit(CallDenied(request, scope.tenant, denial, result, asked, "
            "admitted.reserving))\n"
        ),
        new="",
        tests=(
            "tests/gateway/test_events.py"
            "::test_a_call_its_budget_cannot_cover_is_told_denied_and_never_settled",
            "tests/gateway/test_alerts.py",
        ),
        removes="a denied call is told to the subscribers (log line, metrics, first-deny alert)",
    ),
    Mutation(
        name="item-type-looked-up-unchecked",
        file="proxy/metering/shapes/item_media.py",
        old="    return kind if isinstance(kind, str) else None\n",
        new="    return kind  # type: ignore[no-any-return]\n",
        tests=(
            "tests/metering/test_item_media.py"
            "::test_a_type_that_is_not_a_string_is_no_kind_and_no_error",
        ),
        removes="a Responses object whose type is not a string is no kind, never a 500",
    ),
    # -- issue 16: a startup that fails partway closes what it opened ---------------------------
    Mutation(
        name="store-refusing-at-start-left-open",
        file="proxy/app.py",
        old="        yield\n    finally:\n        await stores.close()\n",
        new="        yield\n    finally:\n        pass\n    await stores.close()\n",
        tests=(
            "tests/processes/test_startup_failures.py"
            "::test_a_store_that_refuses_a_command_at_start_leaves_no_connection_open",
        ),
        removes="a store that fails as it connects at start is closed",
    ),
    Mutation(
        name="failed-app-startup-left-open",
        file="proxy/cli/serve.py",
        old="    try:\n        await runner.setup()\n",
        new="    await runner.setup()\n    try:\n",
        tests=(
            "tests/processes/test_startup_failures.py"
            "::test_a_resource_that_cannot_open_after_the_stores_leaves_them_closed",
        ),
        removes="an app whose startup fails partway closes what its startup had opened",
    ),
    Mutation(
        name="started-listeners-left-open-when-a-later-one-fails",
        file="proxy/cli/serve.py",
        old="    except BaseException:\n        await _shut_down(runners, 0)\n        raise\n",
        new="    except BaseException:\n        raise\n",
        tests=(
            "tests/processes/test_startup_failures.py"
            "::test_a_port_taken_after_the_store_opened_leaves_no_connection_open",
        ),
        removes="the listeners started before one that cannot listen are stopped, stores closed",
    ),
    Mutation(
        name="content-part-types-unchecked",
        file="proxy/metering/message_fields.py",
        old='        _check_parts(entry["content"], f"{path}.content", entries, endpoint)\n',
        new="        pass\n",
        tests=(
            "tests/gateway/test_foreign_images.py"
            "::test_a_part_of_another_api_s_type_is_refused_naming_where_it_is",
        ),
        removes="a content part of another API's type (input_image in chat) is refused",
    ),
    Mutation(
        name="foreign-part-forwarded-by-its-json",
        file="proxy/metering/estimate.py",
        old="    return media_tokens(counter, part, path)\n",
        new="    return counter.count_json(part)\n",
        tests=(
            "tests/gateway/test_foreign_images.py"
            "::test_forwarded_it_is_reserved_as_the_image_it_is",
        ),
        removes="a forwarded chat part of another API's image type is reserved as an image",
    ),
    Mutation(
        name="image-url-in-an-item-by-its-json",
        file="proxy/metering/shapes/item_media.py",
        old='IMAGE_TYPES = frozenset({"input_image", "image_url", "computer_screenshot", "image"})',
        new='IMAGE_TYPES = frozenset({"input_image", "computer_screenshot", "image"})',
        tests=(
            "tests/gateway/test_foreign_images.py"
            "::test_an_image_in_an_item_is_reserved_as_one_whatever_it_says",
        ),
        removes="an image_url part in a function's output is reserved as an image",
    ),
    Mutation(
        name="screenshot-by-what-it-says",
        file="proxy/metering/shapes/item_media.py",
        old='            screenshots.add(id(obj["output"]))\n',
        new="            pass\n",
        tests=(
            "tests/gateway/test_foreign_images.py"
            "::test_an_image_in_an_item_is_reserved_as_one_whatever_it_says",
        ),
        removes="a screenshot is one full image whatever its object's type or detail says",
    ),
    Mutation(
        name="claude-images-not-scaled-by-the-image-factor",
        file="proxy/metering/shapes/messages.py",
        old="    return Estimate(prompt, limit, counter.images)\n",
        new="    return Estimate(prompt, limit)\n",
        tests=(
            "tests/gateway/test_claude_images.py"
            "::test_opus_4_7_images_are_reserved_at_its_larger_rule",
        ),
        removes="Claude's images are reserved times the model's image factor (Opus 4.7: 4784)",
    ),
    Mutation(
        name="claude-images-on-an-unknown-model-allowed",
        file="proxy/metering/billable.py",
        old=(
            '        images=tuple(at for at, _ in blocks.of_type(body.get("messages"), '
            '"messages", "image")),\n'
        ),
        new="",
        tests=(
            "tests/gateway/test_claude_images.py"
            "::test_a_claude_model_without_a_known_image_rule_refuses_images",
        ),
        removes="images on a Claude model whose image rule the proxy does not know are refused",
    ),
    Mutation(
        name="opus-4-7-image-factor-unpublished",
        file="proxy/policy/features.py",
        old='    "claude-opus-4-7": Fraction(4784, 1600),\n',
        new='    "claude-opus-4-7": Fraction(1),\n',
        tests=(
            "tests/gateway/test_claude_images.py"
            "::test_opus_4_7_images_are_reserved_at_its_larger_rule",
        ),
        removes="Claude Opus 4.7's published image factor covers its 4,784-token images",
    ),
    Mutation(
        name="mcp-billed-by-tokens-alone",
        file="proxy/metering/billable.py",
        old='"custom_tool", "computer_use_preview"',
        new='"custom_tool", "mcp", "computer_use_preview"',
        tests=(
            "tests/gateway/test_remote_mcp.py"
            "::test_mcp_on_a_model_that_does_not_price_it_is_refused_naming_it",
            "tests/metering/test_usage.py"
            "::test_a_response_counts_its_mcp_calls_but_not_its_tool_lists_or_approval_requests",
        ),
        removes="a Responses mcp tool is a hosted tool: priced, or refused, and its calls counted",
    ),
    Mutation(
        name="mcp-tool-list-not-reserved",
        file="proxy/metering/billable.py",
        old="        own.append((LISTED, hosted.count(LISTED)))\n",
        new="        pass\n",
        tests=(
            "tests/gateway/test_remote_mcp.py"
            "::test_mcp_calls_and_tool_lists_are_reserved_and_charged_as_billed",
        ),
        removes="each mcp entry reserves its server's tool list",
    ),
    Mutation(
        name="mcp-tool-list-once-per-call",
        file="proxy/metering/billable.py",
        old="        own.append((LISTED, hosted.count(LISTED)))\n",
        new="        own.append((LISTED, 1))\n",
        tests=(
            "tests/gateway/test_remote_mcp.py"
            "::test_mcp_calls_and_tool_lists_are_reserved_and_charged_as_billed",
        ),
        removes="each mcp entry reserves a tool list of its own (two servers, two lists)",
    ),
    Mutation(
        name="stored-prompt-mcp-list-not-reserved",
        file="proxy/metering/billable_reserve.py",
        old="        counts[LISTED] = counts.get(LISTED, 0) + 1\n",
        new="        pass\n",
        tests=(
            "tests/gateway/test_remote_mcp.py"
            "::test_a_stored_prompt_s_mcp_server_lists_its_tools_within_the_reservation",
        ),
        removes="a stored prompt on a model pricing mcp reserves one server's tool list",
    ),
    Mutation(
        name="container-skills-neutral",
        file="proxy/metering/request_fields.py",
        old='    "container": Field("neutral", _CONTAINER["id"].note, inner=_CONTAINER),\n',
        new='    "container": Field("neutral", _CONTAINER["id"].note),\n',
        tests=(
            "tests/gateway/test_agent_skills.py"
            "::test_a_container_with_skills_is_refused_naming_container_skills",
        ),
        removes="Messages container.skills (Agent Skills) is refused",
    ),
    Mutation(
        name="container-object-fields-unchecked",
        file="proxy/metering/request_fields.py",
        old='            raise _unknown(f"{name}.{key}", endpoint)\n',
        new="            continue\n",
        tests=(
            "tests/metering/test_request_fields.py"
            "::test_a_container_field_that_adds_cost_or_is_unknown_is_refused",
        ),
        removes="a container object's field the table does not list is refused",
    ),
    # -- issue 13, review: audio by its duration, image details, tool types ------------------
    Mutation(
        name="input-audio-by-its-base64-length",
        file="proxy/metering/estimate.py",
        old=(
            '        return input_audio_tokens(expect_str(data, f"{path}.input_audio.data"), '
            "path)\n"
        ),
        new='        return len(expect_str(data, f"{path}.input_audio.data"))\n',
        tests=(
            "tests/gateway/test_audio_duration.py"
            "::test_a_low_rate_wav_is_reserved_for_the_duration_it_is_billed",
        ),
        removes="a low-rate WAV is reserved by the duration the provider bills",
    ),
    Mutation(
        name="wav-timed-by-its-byte-rate",
        file="proxy/metering/audio.py",
        old="    return min(rates)\n",
        new="    return rates[0]\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_a_wav_s_duration_is_bounded_whatever_its_header_claims",
        ),
        removes="a WAV is timed by its sample rate, whatever its byte rate field claims",
    ),
    Mutation(
        name="wav-data-by-its-first-chunk",
        file="proxy/metering/audio.py",
        old="    present = max(0, len(data) * 3 // 4 - start)\n",
        new=(
            "    present = min(max(0, len(data) * 3 // 4 - start),"
            " int.from_bytes(audio.read(start - 4, 4), 'little'))\n"
        ),
        tests=(
            "tests/metering/test_audio.py"
            "::test_a_wav_s_duration_is_bounded_whatever_its_header_claims",
        ),
        removes="every byte after a WAV's first data header counts, whatever its size says",
    ),
    Mutation(
        name="unbounded-wav-by-its-length",
        file="proxy/metering/audio.py",
        old="    if start is None or rate is None:\n        raise BadRequest(\n",
        new=(
            "    if start is None or rate is None:\n        return utf8_len(data)\n"
            "    if False:\n        raise BadRequest(\n"
        ),
        tests=(
            "tests/gateway/test_audio_duration.py"
            "::test_a_wav_whose_header_bounds_no_duration_is_refused",
        ),
        removes="a WAV whose header bounds no duration is refused",
    ),
    Mutation(
        name="wav-padding-cut",
        file="proxy/metering/audio.py",
        old='        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)\n',
        new="        return base64.b64decode(text[: len(text) // 4 * 4], validate=True)\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_a_wav_whose_base64_ends_in_padding_is_read_to_its_last_byte",
        ),
        removes="a WAV's base64 is read to its last byte, its padded last group too",
    ),
    Mutation(
        name="image-detail-any-string",
        file="proxy/metering/images.py",
        old="    if detail is None or detail in DETAILS:\n",
        new="    if detail is None or isinstance(detail, str):\n",
        tests=(
            "tests/gateway/test_image_detail.py"
            "::test_a_detail_the_tile_rule_does_not_price_is_refused_naming_where_it_is",
        ),
        removes="an image detail other than low, high or auto is refused",
    ),
    Mutation(
        name="image-without-detail-refused",
        file="proxy/metering/images.py",
        old="    if detail is None or detail in DETAILS:\n",
        new="    if detail in DETAILS:\n",
        tests=(
            "tests/gateway/test_image_detail.py::test_an_image_without_a_detail_is_reserved_as_auto",
        ),
        removes="an image without a detail is auto",
    ),
    Mutation(
        name="item-image-detail-unchecked",
        file="proxy/metering/shapes/item_media.py",
        old="    check_detail(detail, where)\n",
        new="",
        tests=(
            "tests/gateway/test_image_detail.py"
            "::test_a_detail_the_tile_rule_does_not_price_is_refused_naming_where_it_is",
        ),
        removes="an image's detail is checked wherever an item carries it",
    ),
    Mutation(
        name="responses-part-detail-unchecked",
        file="proxy/metering/shapes/responses.py",
        old='        check_detail(part.get("detail"), f"{path}.detail")\n',
        new="",
        tests=(
            "tests/metering/test_item_media.py"
            "::test_a_detail_the_tile_rule_does_not_price_is_refused_where_it_is",
        ),
        removes="the Responses estimate refuses a detail the tile rule does not price",
    ),
    Mutation(
        name="chat-part-detail-unchecked",
        file="proxy/metering/estimate.py",
        old='    check_detail(image.get("detail"), f"{path}.detail")\n',
        new="",
        tests=(
            "tests/metering/test_estimate.py"
            "::test_malformed_chat_body_is_a_bad_request_naming_the_field",
        ),
        removes="the chat estimate refuses a detail the tile rule does not price",
    ),
    Mutation(
        name="tool-types-unchecked",
        file="proxy/metering/billable.py",
        old='        check_tools(body.get("tools"), typed=endpoint == "responses")\n',
        new="        pass\n",
        tests=(
            "tests/gateway/test_tool_types.py"
            "::test_a_tool_whose_type_is_not_a_string_is_refused_before_anything_is_reserved",
        ),
        removes="a tool that is not an object, or whose type is not a string, is refused",
    ),
    Mutation(
        name="tool-not-an-object-passes",
        file="proxy/metering/billable.py",
        old="        if not isinstance(tool, dict):\n            raise BadRequest(\n",
        new=(
            "        if not isinstance(tool, dict):\n            continue\n"
            "            raise BadRequest(\n"
        ),
        tests=(
            "tests/gateway/test_tool_types.py"
            "::test_a_tool_whose_type_is_not_a_string_is_refused_before_anything_is_reserved",
        ),
        removes="a tool definition that is not an object is refused",
    ),
    Mutation(
        name="untyped-anthropic-tool-refused",
        file="proxy/metering/billable.py",
        old='        check_tools(body.get("tools"), typed=endpoint == "responses")\n',
        new='        check_tools(body.get("tools"), typed=True)\n',
        tests=(
            "tests/gateway/test_tool_types.py::test_an_untyped_anthropic_tool_is_a_custom_tool",
        ),
        removes="an untyped Anthropic tool is a custom tool",
    ),
    Mutation(
        name="error-body-read-before-release",
        file="proxy/gateway/pipeline.py",
        old=(
            "            await flight.release()\n"
            "            body = await _read_or_empty(upstream, deadline)\n"
        ),
        new=(
            "            body = await _read_or_empty(upstream, deadline)\n"
            "            await flight.release()\n"
        ),
        tests=(
            "tests/gateway/test_endings.py"
            "::test_an_error_answer_whose_body_is_cut_by_a_stop_is_released",
        ),
        removes="an error status is released before its body is read (a stop cannot leave it held)",
    ),
    Mutation(
        name="alias-images-at-the-price-entry-s-factor",
        file="proxy/policy/aliases.py",
        old="            aliases[name] = Alias(upstream_name, send, price, served)\n",
        new="            aliases[name] = Alias(upstream_name, send, price)\n",
        tests=(
            "tests/gateway/test_alias_images.py"
            "::test_an_opus_4_7_alias_priced_as_opus_4_6_reserves_opus_4_7_images",
            "tests/gateway/test_alias_images.py"
            "::test_an_alias_sent_as_gpt_4o_mini_reserves_its_tiles_though_priced_as_gpt_4o",
            "tests/policy/test_image_factors.py"
            "::test_an_alias_reserves_images_at_least_at_the_factor_published_for_the_model_sent",
        ),
        removes="an alias's images are reserved at least at the served model's published factor",
    ),
    Mutation(
        name="alias-served-price-unused",
        file="proxy/policy/runtime.py",
        old="            if alias.served is not None:\n",
        new="            if False:\n",
        tests=(
            "tests/gateway/test_alias_images.py"
            "::test_an_opus_4_7_alias_priced_as_opus_4_6_reserves_opus_4_7_images",
        ),
        removes="a call for an alias is priced at the alias's derived price",
    ),
    Mutation(
        name="alias-image-factor-unshown",
        file="proxy/policy/describe.py",
        old="    if factor is not None:\n        priced += (\n",
        new="    if False:\n        priced += (\n",
        tests=(
            "tests/gateway/test_alias_images.py"
            "::test_check_shows_the_factor_an_alias_is_reserved_at",
        ),
        removes="check shows the image factor an alias is reserved at",
    ),
    Mutation(
        name="namespace-a-hosted-tool",
        file="proxy/metering/shapes/tool_lists.py",
        old="        if kind == NAMESPACE:\n",
        new="        if False:\n",
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_an_agent_with_a_tool_namespace_and_a_client_tool_search_runs_within_budget",
            "tests/metering/test_tool_lists.py::test_the_hosted_tools_a_request_enables_wherever_it_declares_them",
        ),
        removes="a Responses namespace is billed by its tokens alone (openai-agents' namespaces)",
    ),
    Mutation(
        name="namespace-tools-unpriced",
        file="proxy/metering/shapes/tool_lists.py",
        old='            kinds += tool_types(tool.get("tools"))\n',
        new="            pass\n",
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_a_hosted_tool_a_namespace_or_a_search_holds_is_reserved_at_its_fee",
            "tests/gateway/test_tool_namespaces.py::test_what_a_namespace_or_a_search_holds_is_priced_or_refused_before_anything_is_sent",
        ),
        removes="a hosted tool inside a namespace is priced, or refused, as one in tools",
    ),
    Mutation(
        name="client-tool-search-a-hosted-tool",
        file="proxy/metering/shapes/tool_lists.py",
        old=(
            "        elif isinstance(kind, str)"
            " and not (kind == TOOL_SEARCH and runs_on_client(tool)):\n"
        ),
        new="        elif isinstance(kind, str):\n",
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_tools_billed_by_their_tokens_alone_are_charged_what_was_billed",
            "tests/gateway/test_tool_namespaces.py::test_an_agent_with_a_tool_namespace_and_a_client_tool_search_runs_within_budget",
        ),
        removes="a tool search the client runs is billed by its tokens alone",
    ),
    Mutation(
        name="server-tool-search-free",
        file="proxy/metering/shapes/tool_lists.py",
        old='    return item.get("execution") == "client"\n',
        new="    return True\n",
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_what_a_namespace_or_a_search_holds_is_priced_or_refused_before_anything_is_sent",
        ),
        removes="a tool search the provider runs is a hosted tool, priced or refused",
    ),
    Mutation(
        name="client-tool-search-call-charged-a-fee",
        file="proxy/metering/tool_uses.py",
        old=(
            '        if not isinstance(kind, str) or not kind.endswith("_call")'
            " or runs_on_client(item):\n"
        ),
        new='        if not isinstance(kind, str) or not kind.endswith("_call"):\n',
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_tools_billed_by_their_tokens_alone_are_charged_what_was_billed",
            "tests/metering/test_tool_lists.py::test_a_client_tool_search_call_is_no_hosted_call_and_a_server_one_is",
        ),
        removes="a client tool search's tool_search_call items are not charged as hosted calls",
    ),
    Mutation(
        name="tools-loaded-by-a-search-unpriced",
        file="proxy/metering/billable.py",
        old='    declared = [body.get("tools"), *(tools for _, tools in loaded)]\n',
        new='    declared = [body.get("tools")]\n',
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_a_hosted_tool_a_namespace_or_a_search_holds_is_reserved_at_its_fee",
            "tests/gateway/test_tool_namespaces.py::test_what_a_namespace_or_a_search_holds_is_priced_or_refused_before_anything_is_sent",
        ),
        removes="a hosted tool a tool_search_output input item loads is priced or refused",
    ),
    Mutation(
        name="namespace-tools-unchecked",
        file="proxy/metering/billable.py",
        old="        if typed and kind == NAMESPACE:\n",
        new="        if False:\n",
        tests=(
            "tests/gateway/test_tool_namespaces.py::test_what_a_namespace_or_a_search_holds_is_priced_or_refused_before_anything_is_sent",
            "tests/metering/test_tool_lists.py::test_a_tool_in_a_namespace_or_loaded_by_a_search_is_checked_as_tools_are",
        ),
        removes="a namespace's tools are checked as tools are (objects with a string type)",
    ),
    # -- issue 13, second review: GIF size, closed-world audio -----------------------------------
    Mutation(
        name="gif-sized-by-its-screen",
        file="proxy/metering/images.py",
        old="    size = _png(raw) or _webp(raw) or _jpeg(raw)\n",
        new=(
            '    gif = struct.unpack("<HH", raw[6:10]) if raw[:6] == b"GIF89a" else None\n'
            "    size = _png(raw) or gif or _webp(raw) or _jpeg(raw)\n"
        ),
        tests=(
            "tests/gateway/test_gif_images.py"
            "::test_a_gif_is_reserved_as_the_largest_image_it_can_be_billed_as",
        ),
        removes="a GIF counts the default image tokens, not the size its logical screen says",
    ),
    Mutation.never(
        name="wav-of-any-codec-timed",
        file="proxy/metering/audio.py",
        old="    if tag not in (_PCM, _FLOAT):\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_cannot_time_is_refused_naming_the_part",
            "tests/metering/test_audio.py::test_a_wav_of_a_codec_other_than_pcm_is_refused",
        ),
        removes="a WAV of a codec other than PCM or float is refused",
    ),
    Mutation.never(
        name="wav-second-fmt-passes",
        file="proxy/metering/audio.py",
        old="            if fmts > 1:\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_cannot_time_is_refused_naming_the_part",
            "tests/metering/test_audio.py::test_a_wav_with_a_second_fmt_chunk_anywhere_is_refused",
        ),
        removes="a WAV of more than one fmt chunk is refused",
    ),
    Mutation(
        name="wav-chunks-read-in-the-head-only",
        file="proxy/metering/audio.py",
        old="        if at + count <= len(self.head) or len(self._data) <= _HEAD_CHARS:\n",
        new="        if True:\n",
        tests=(
            "tests/metering/test_audio.py::test_a_wav_with_a_second_fmt_chunk_anywhere_is_refused",
            "tests/metering/test_audio.py::test_an_mp3_is_counted_by_its_base64_length",
        ),
        removes="a WAV's chunks and an mp3's frame past the first 48 KiB are read",
    ),
    Mutation(
        name="wav-head-only-refuses-past-it",
        file="proxy/metering/audio.py",
        old="        text = self._whole()\n        return _decode(",
        new="        raise ValueError\n        return _decode(",
        tests=("tests/metering/test_audio.py::test_chunks_past_the_first_48_kib_are_read",),
        removes="a WAV with a chunk past the first 48 KiB is read, not refused",
    ),
    Mutation(
        name="wav-rf64-data-by-its-literal-size",
        file="proxy/metering/audio.py",
        old='        elif kind == b"ds64" and length >= 16:\n',
        new="        elif False:\n",
        tests=(
            "tests/metering/test_audio.py::test_a_wav_with_a_second_fmt_chunk_anywhere_is_refused",
        ),
        removes="an RF64's chunks after its data are found by the size its ds64 chunk gives",
    ),
    Mutation(
        name="wav-silence-walked-chunk-by-chunk",
        file="proxy/metering/audio.py",
        old="        elif header == bytes(8):\n",
        new="        elif False:\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_a_wav_s_duration_is_bounded_whatever_its_header_claims",
        ),
        removes="silence after a data chunk of size 0 is skipped whole, not refused as chunks",
    ),
    Mutation(
        name="wav-chunks-unbounded",
        file="proxy/metering/audio.py",
        old="_MAX_CHUNKS = 4096\n",
        new="_MAX_CHUNKS = 1 << 20\n",
        tests=("tests/metering/test_audio.py::test_a_wav_of_too_many_chunks_is_refused",),
        removes="a WAV of more chunks than a reader needs is refused (the event loop is not held)",
    ),
    Mutation(
        name="wav-extensible-valid-bits-ignored",
        file="proxy/metering/audio.py",
        old="    for sample_bits in (bits, valid_bits) if valid_bits else (bits,):\n",
        new="    for sample_bits in (bits,):\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_a_wav_s_duration_is_bounded_whatever_its_header_claims",
        ),
        removes="an extensible WAV is timed by its valid bits too",
    ),
    Mutation(
        name="audio-of-any-container-by-its-length",
        file="proxy/metering/audio.py",
        old="    if _is_mp3(audio):\n",
        new="    if True:\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_cannot_time_is_refused_naming_the_part",
            "tests/metering/test_audio.py::test_audio_neither_mp3_nor_a_wav_is_refused",
        ),
        removes="audio that is neither an mp3 nor a RIFF WAV is refused",
    ),
    Mutation.never(
        name="mp3-refused",
        file="proxy/metering/audio.py",
        old="    if _is_mp3(audio):\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_can_time_is_reserved_for_what_is_billed",
        ),
        removes="an mp3 passes, reserved as its base64 length",
    ),
    Mutation.never(
        name="mp3-id3-tag-not-skipped",
        file="proxy/metering/audio.py",
        old=(
            '    if tag[:3] == b"ID3" and len(tag) == 10'
            " and not any(byte & 0x80 for byte in tag[6:10]):\n"
        ),
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_can_time_is_reserved_for_what_is_billed",
            "tests/metering/test_audio.py::test_an_mp3_is_counted_by_its_base64_length",
        ),
        removes="an mp3 after an ID3v2 tag passes",
    ),
    Mutation(
        name="fake-bills-a-wav-s-declared-size",
        file="proxy/testing/fake_tokens.py",
        old="            size += min(length, len(raw) - at - 8)\n",
        new="            size += length\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_can_time_is_reserved_for_what_is_billed",
            "tests/testing/test_fake_tokens.py::test_audio_is_billed_for_the_bytes_a_wav_holds",
        ),
        removes="the fake bills the audio bytes a WAV holds, not the size its header claims",
    ),
    Mutation(
        name="sse-first-chunk-line-by-line",
        file="proxy/gateway/sse.py",
        old='            if not fresh or chunk[:1] in (b"", _BOM_FIRST_BYTE):\n',
        new="            if True:\n",
        tests=(
            "tests/gateway/test_sse.py"
            "::test_a_first_chunk_without_a_bom_takes_the_whole_event_path",
        ),
        removes="a stream's first chunk is cut into whole events when it holds no BOM",
    ),
    Mutation(
        name="sse-first-chunk-bom-on-the-fast-path",
        file="proxy/gateway/sse.py",
        old='            if not fresh or chunk[:1] in (b"", _BOM_FIRST_BYTE):\n',
        new='            if not fresh or chunk[:1] == b"":\n',
        tests=("tests/gateway/test_sse.py::test_leading_bom_is_ignored",),
        removes="a stream beginning with a BOM takes the line path, which drops the BOM",
    ),
    Mutation(
        name="alias-to-another-model-keeps-the-entry-s-factor",
        file="proxy/policy/aliases.py",
        old="if same or (snapshot_of(send) or send) == (snapshot_of(entry.name) or entry.name):",
        new="if True:",
        tests=(
            "tests/gateway/test_alias_images.py"
            "::test_an_alias_sent_as_a_model_with_no_published_image_rule_refuses_its_images",
            "tests/policy/test_image_factors.py"
            "::test_an_alias_sent_as_a_model_with_no_published_rule_takes_only_a_written_factor",
        ),
        removes="an alias served as another model does not take its entry's published image factor",
    ),
    Mutation(
        name="alias-written-image-factor-ignored",
        file="proxy/policy/aliases.py",
        old="    if published is None:\n        return written\n",
        new="    if published is None:\n        return None\n",
        tests=(
            "tests/gateway/test_alias_images.py"
            "::test_an_alias_sent_as_a_model_with_no_published_image_rule_takes_the_written_factor",
        ),
        removes="an alias served as a model with no published image rule takes the written factor",
    ),
    Mutation(
        name="alias-images-refused-unshown",
        file="proxy/policy/describe.py",
        old="    elif served is not None:\n",
        new="    elif False:\n",
        tests=(
            "tests/policy/test_image_factors.py"
            "::test_check_says_an_alias_s_images_are_refused_and_what_to_write",
        ),
        removes="check says an alias's images are refused and what to write",
    ),
    Mutation(
        name="mp3-frames-not-chained-to-the-end",
        file="proxy/metering/audio.py",
        old="    return at > start and (at + 4 > len(raw) or _tags_start(raw, at) == at)\n",
        new="    return at > start\n",
        tests=(
            "tests/gateway/test_audio_formats.py"
            "::test_audio_the_proxy_cannot_time_is_refused_naming_the_part",
            "tests/metering/test_audio.py"
            "::test_data_that_only_begins_with_a_frame_sync_is_not_an_mp3",
        ),
        removes="an mp3's frames must follow one another to its end (or its tags)",
    ),
    Mutation(
        name="mp3-free-format-frames-accepted",
        file="proxy/metering/audio.py",
        old="        if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:\n",
        new="        if version == 1 or layer != 1 or bitrate == 15 or rate == 3:\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_data_that_only_begins_with_a_frame_sync_is_not_an_mp3",
        ),
        removes="a free-format frame header does not make an mp3",
    ),
    Mutation(
        name="mp3-layer-ii-frames-accepted",
        file="proxy/metering/audio.py",
        old="        if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:\n",
        new="        if version == 1 or layer == 0 or bitrate in (0, 15) or rate == 3:\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_data_that_only_begins_with_a_frame_sync_is_not_an_mp3",
        ),
        removes="only layer III frames make an mp3",
    ),
    Mutation(
        name="mp3-apev2-tag-not-skipped",
        file="proxy/metering/audio.py",
        old="            end = begins\n",
        new="            pass\n",
        tests=(
            "tests/metering/test_audio.py"
            "::test_an_mp3_s_frames_follow_one_another_to_its_end_or_its_tags",
        ),
        removes="an mp3's frames may end at an APEv2 tag",
    ),
    # -- end users (issue 18) ----------------------------------------------------------------
    Mutation(
        name="end-user-not-read-from-the-body",
        file="proxy/budget/end_users.py",
        old="    found = _in_body(body, endpoint)\n",
        new="    found = None\n",
        tests=(
            f"{END_USERS}::test_200_concurrent_first_calls_of_a_new_user_get_exactly_the_5_that_fit",
            f"{END_USERS}::test_the_anthropic_sdks_metadata_user_id_is_the_user",
        ),
        removes="a new user's burst of first calls is held to its budget (the body's user)",
    ),
    Mutation(
        name="end-user-header-not-read",
        file="proxy/budget/scopes.py",
        old='    "user": "X-Cycles-User",\n',
        new="",
        tests=(f"{END_USERS}::{FROM_HEADER_ELSE_BODY}",),
        removes="X-Cycles-User names the end user, before the body",
    ),
    Mutation(
        name="safety-identifier-not-read",
        file="proxy/budget/end_users.py",
        old='    for name in ("user", "safety_identifier"):\n',
        new='    for name in ("user",):\n',
        tests=(f"{END_USERS}::{FROM_HEADER_ELSE_BODY}",),
        removes="an OpenAI body's safety_identifier names the end user when it has no user",
    ),
    Mutation.never(
        name="anthropic-metadata-user-not-read",
        file="proxy/budget/end_users.py",
        old='    if endpoint == "messages":\n',
        tests=(f"{END_USERS}::test_the_anthropic_sdks_metadata_user_id_is_the_user",),
        removes="Anthropic's metadata.user_id names the end user",
    ),
    Mutation(
        name="hashed-end-user-ids-kept-plain",
        file="proxy/budget/end_users.py",
        old="            return hmac.new(",
        new="            return raw.lower() or hmac.new(",
        tests=(f"{END_USER_IDS}::test_hashed_ids_are_all_the_ledger_audit_and_log_keep",),
        removes="under user_ids: hash only a keyed hash of an id is kept",
    ),
    Mutation(
        name="end-user-hash-not-keyed",
        file="proxy/budget/end_users.py",
        old="hmac.new(self.secret, message, hashlib.sha256)",
        new='hmac.new(b"", message, hashlib.sha256)',
        tests=(
            f"{END_USER_SCOPES}::test_hashed_ids_are_keyed_mixed_with_the_tenant_and_accept_any_string",
            f"{END_USER_IDS}::test_hashed_ids_are_all_the_ledger_audit_and_log_keep",
        ),
        removes="the end-user hash is keyed by the proxy's secret",
    ),
    Mutation(
        name="end-user-hash-not-mixed-with-the-tenant",
        file="proxy/budget/end_users.py",
        old='            message = f"{tenant}\\n{raw.lower()}".encode()\n',
        new="            message = raw.lower().encode()\n",
        tests=(
            f"{END_USER_SCOPES}::test_hashed_ids_are_keyed_mixed_with_the_tenant_and_accept_any_string",
            f"{END_USER_IDS}::test_hashed_ids_are_all_the_ledger_audit_and_log_keep",
        ),
        removes="one person known to two tenants gets unrelated kept ids",
    ),
    Mutation(
        name="end-user-header-not-hashed",
        file="proxy/gateway/admission.py",
        old="        return self.runtime.users.in_scope(scope)\n",
        new="        return scope\n",
        tests=(f"{END_USER_IDS}::test_hashed_ids_are_all_the_ledger_audit_and_log_keep",),
        removes="an end user named by X-Cycles-User is hashed too",
    ),
    Mutation.never(
        name="end-user-hash-starts-without-its-secret",
        file="proxy/budget/end_users.py",
        old="    if len(secret) < MIN_SECRET_CHARS:\n",
        tests=(
            f"{END_USER_IDS}::test_without_its_secret_a_hashing_policy_neither_starts_nor_reloads",
        ),
        removes="a policy that hashes end-user ids does not start or reload without its secret",
    ),
    Mutation(
        name="end-user-reload-without-its-secret-crashes-the-watcher",
        file="proxy/policy/watcher.py",
        old=(
            "            _check_compatible(self._current, policy)\n"
            "            await self._apply(policy)\n"
            "        except PolicyError as exc:\n"
            '            log.error("policy NOT reloaded, keeping the last good one:\\n%s", exc)\n'
            "            return\n"
        ),
        new=(
            "            _check_compatible(self._current, policy)\n"
            "        except PolicyError as exc:\n"
            '            log.error("policy NOT reloaded, keeping the last good one:\\n%s", exc)\n'
            "            return\n"
            "        await self._apply(policy)\n"
        ),
        tests=(
            f"{END_USER_IDS}::test_without_its_secret_a_hashing_policy_neither_starts_nor_reloads",
        ),
        removes="a reload the proxy refuses (a missing secret) keeps the policy in force",
    ),
    Mutation.never(
        name="pinned-end-user-body-ignored",
        file="proxy/budget/end_users.py",
        old="    if pinned is not None and kept != pinned:\n",
        tests=(f"{END_USER_IDS}::test_a_key_may_pin_the_user",),
        removes="a body naming another user than the key pins is 403",
    ),
    Mutation(
        name="end-user-not-pinnable",
        file="proxy/store/api_keys/records.py",
        old='"agent", "toolset", "run", "user")',
        new='"agent", "toolset", "run")',
        tests=(f"{END_USER_IDS}::test_a_key_may_pin_the_user",),
        removes="a key may pin the end user",
    ),
    Mutation.never(
        name="plain-end-user-id-not-checked",
        file="proxy/budget/end_users.py",
        old="        if not isinstance(raw, str) or not SCOPE_VALUE.fullmatch(raw):\n",
        tests=(
            f"{END_USER_IDS}::test_an_id_plain_cannot_keep_is_refused_only_where_users_are_kept",
        ),
        removes="under user_ids: plain an id that is not a scope value is refused",
    ),
    Mutation.never(
        name="bad-end-user-id-refused-where-nothing-is-kept",
        file="proxy/budget/end_users.py",
        old="    if pinned is None and not plan.limits_level(END_USER):\n",
        tests=(
            f"{END_USER_IDS}::test_an_id_plain_cannot_keep_is_refused_only_where_users_are_kept",
        ),
        removes="clients that always sent `user` keep working where the plan keeps no users",
    ),
    Mutation(
        name="end-user-entries-expire-as-other-levels",
        file="proxy/store/ledger/lua/common.lua",
        old="  if level == 'user' and (EXACT or pid == '-') then\n",
        new="  if false then\n",
        tests=(END_USER_EXPIRY,),
        removes="Redis: an idle end user's entries go once its period has ended",
    ),
    Mutation.never(
        name="memory-end-user-entries-expire-as-other-levels",
        file="proxy/store/ledger/memory_state.py",
        old='        if prefix.startswith(USER_HEAD) and (cal is not None or pid == "-"):\n',
        tests=(END_USER_EXPIRY,),
        removes="memory://: an idle end user's entries go once its period has ended",
    ),
    Mutation(
        name="end-user-entry-dropped-before-its-period-ends",
        file="proxy/store/ledger/lua/common.lua",
        old="  return math.min(stop + GRACE, math.max(stop, idle))\n",
        new="  return math.min(stop + GRACE, idle)\n",
        tests=(f"{END_USER_EXPIRY}::test_an_idle_users_day_is_kept_until_it_ends_then_dropped",),
        removes="Redis: an idle user's day is kept until it ends (else its budget comes back)",
    ),
    Mutation(
        name="memory-end-user-entry-dropped-before-its-period-ends",
        file="proxy/store/ledger/common.py",
        old="    return min(period_end + settings.period_grace_ms, max(period_end, idle))\n",
        new="    return min(period_end + settings.period_grace_ms, idle)\n",
        tests=(f"{END_USER_EXPIRY}::test_an_idle_users_day_is_kept_until_it_ends_then_dropped",),
        removes="memory://: an idle user's day is kept until it ends",
    ),
    Mutation(
        name="end-user-rate-not-checked",
        file="proxy/store/ledger/lua/quotas.lua",
        old="  for _, r in ipairs(q.rates) do\n",
        new="  for _, r in ipairs({}) do\n",
        tests=(f"{LEDGER_END_USERS}::test_each_user_has_its_own_request_rate",),
        removes="Redis: each end user's request rate is checked",
    ),
    Mutation(
        name="memory-end-user-rate-not-checked",
        file="proxy/store/ledger/quotas.py",
        old="    for level, value, limit in q.rates:\n",
        new="    for level, value, limit in ():\n",
        tests=(f"{LEDGER_END_USERS}::test_each_user_has_its_own_request_rate",),
        removes="memory://: each end user's request rate is checked",
    ),
    Mutation(
        name="end-user-rates-not-asked",
        file="proxy/budget/reserve.py",
        old="            for level, limit in q.level_requests_per_minute\n",
        new="            for level, limit in ()\n",
        tests=(f"{END_USERS}::test_each_user_has_its_own_request_rate",),
        removes="a plan's requests_per_minute by level reaches the ledger",
    ),
    Mutation(
        name="end-user-first-deny-alerts",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  if string.match(prefix, '^[^|]*') == 'user' then return nil end\n",
        new="",
        tests=(f"{LEDGER_END_USERS}::test_a_users_lines_raise_no_alerts_while_the_tenants_do",),
        removes="Redis: an end user's line raises no first-denial alert",
    ),
    Mutation(
        name="memory-end-user-first-deny-alerts",
        file="proxy/store/ledger/memory_state.py",
        old="        if name in self.counters.values or not alerted(prefix):\n",
        new="        if name in self.counters.values:\n",
        tests=(f"{LEDGER_END_USERS}::test_a_users_lines_raise_no_alerts_while_the_tenants_do",),
        removes="memory://: an end user's line raises no first-denial alert",
    ),
    Mutation(
        name="end-user-threshold-alerts",
        file="proxy/store/ledger/common.py",
        old="        if limit > 0 and alerted(field)\n",
        new="        if limit > 0\n",
        tests=(f"{LEDGER_END_USERS}::test_a_users_lines_raise_no_alerts_while_the_tenants_do",),
        removes="an end user's line crosses no alert threshold",
    ),
    Mutation(
        name="top-spenders-least-first",
        file="proxy/store/ledger/spenders.py",
        old="    return -spent, prefix\n",
        new="    return spent, prefix\n",
        tests=(
            f"{LEDGER_END_USERS}::test_the_top_spenders_of_a_level_most_first_in_one_unit_and_period",
        ),
        removes="the top spenders are the most spent",
    ),
    Mutation(
        name="balances-list-every-end-user",
        file="proxy/store/ledger/memory.py",
        old="balance_rows(self._tenant(tenant).ledger.own)",
        new="balance_rows(self._tenant(tenant).ledger)",
        tests=(
            f"{ADMIN_END_USERS}::test_the_top_end_users_most_spent_first_and_balances_leave_them_out",
        ),
        removes="/balances leaves out the end users (there may be millions)",
    ),
    Mutation(
        name="admin-end-user-id-not-hashed",
        file="proxy/admin/user_routes.py",
        old='runtime(request).users.kept(record.id, request.match_info["user"], "user")',
        new='request.match_info["user"].lower()',
        tests=(f"{ADMIN_END_USERS}::test_one_users_lines_by_the_id_its_clients_send",),
        removes="the admin API finds a user by the id its clients send, hashed first",
    ),
    Mutation(
        name="end-users-in-the-tenants-hash",
        file="proxy/store/ledger/lua/common.lua",
        old="if string.sub(field, 1, #head) == head then return KEYS[8] end",
        new="if string.sub(field, 1, #head) == head then return KEYS[1] end",
        tests=(
            f"{MANY_USERS}::test_balances_read_the_tenants_own_lines_only[redis]",
            f"{MANY_USERS}::test_a_reset_without_a_level_leaves_end_users_alone[redis]",
        ),
        removes="Redis keeps end users' entries apart from the tenant's own (:users)",
    ),
    Mutation(
        name="reset-without-level-resets-end-users",
        file="proxy/store/tenants/memory.py",
        old="        return list(t.ledger.own.items())\n",
        new="        return list(t.ledger.items())\n",
        tests=(f"{MANY_USERS}::test_a_reset_without_a_level_leaves_end_users_alone[memory]",),
        removes="a reset without a level leaves the end users alone",
    ),
    Mutation(
        name="reset-of-one-user-walks-every-user-memory",
        file="proxy/store/tenants/memory.py",
        old=(
            "    return [(name, t.ledger.users[name])"
            " for name in names if name in t.ledger.users]\n"
        ),
        new=(
            "    return [(n, x) for n, x in t.ledger.users.items()"
            " if n.startswith(f'user|{value}|')]\n"
        ),
        tests=(f"{MANY_USERS}::test_a_reset_of_one_user_reads_that_users_fields_only[memory]",),
        removes="a reset of one end user reads that user's fields only (memory://)",
    ),
    Mutation(
        name="reset-of-one-user-walks-every-user-redis",
        file="proxy/store/ledger/lua/tenant_ledger.lua",
        old="  if ARGV[9] ~= 'user' then return redis.call('HGETALL', KEYS[1]) end\n",
        new=(
            "  if true then return redis.call('HGETALL',"
            " ARGV[9] == 'user' and KEYS[8] or KEYS[1]) end\n"
        ),
        tests=(f"{MANY_USERS}::test_a_reset_of_one_user_reads_that_users_fields_only[redis]",),
        removes="a reset of one end user reads that user's fields only (Redis)",
    ),
    Mutation(
        name="reset-level-user-without-value",
        file="proxy/admin/api.py",
        old="    if level == END_USER and value is None:\n",
        new="    if False:\n",
        tests=(f"{ADMIN_END_USERS}::test_a_reset_of_level_user_names_one_user",),
        removes="a reset of level user must name the user",
    ),
    Mutation(
        name="user-ids-secret-not-checked-against-the-store",
        file="proxy/app.py",
        old="user_ids=users.fingerprint()",
        new="user_ids=None",
        tests=(f"{END_USER_IDS}::test_replicas_with_different_secrets_cannot_share_a_store",),
        removes="a replica whose user-id secret is not the store's refuses to start",
    ),
    Mutation.never(
        name="reload-changes-the-user-ids-secret",
        file="proxy/budget/end_users.py",
        old="    if new.fingerprint() != current.fingerprint():\n",
        tests=(f"{END_USER_IDS}::test_a_reload_never_changes_how_ids_are_kept",),
        removes="a reload cannot change the secret end-user ids are hashed with",
    ),
    Mutation.never(
        name="reload-switches-user-ids-plain-and-hash",
        file="proxy/budget/end_users.py",
        old="    if new.hashed != current.hashed:\n",
        tests=(f"{END_USER_IDS}::test_a_reload_never_changes_how_ids_are_kept",),
        removes="a reload cannot switch user_ids between plain and hash",
    ),
    Mutation(
        name="top-spenders-list-a-user-twice",
        file="proxy/store/ledger/spenders.py",
        old=(
            "        merged = dict(self._kept)\n        for name, spent in fields:\n"
            "            merged[name.removesuffix(SPENT)] = spent\n"
            "        self._kept = heapq.nsmallest(self.limit, merged.items(), key=_rank)\n"
        ),
        new=(
            "        offered = [(name.removesuffix(SPENT), spent) for name, spent in fields]\n"
            "        self._kept = heapq.nsmallest(self.limit, [*self._kept, *offered], key=_rank)\n"
        ),
        tests=(f"{LEDGER_END_USERS}::test_a_line_the_walk_meets_twice_is_listed_once",),
        removes="a line HSCAN returns twice is listed once among the top spenders",
    ),
    Mutation(
        name="lone-dash-is-a-scope-value",
        file="proxy/core/types.py",
        old='SCOPE_VALUE = re.compile(r"(?!-\\Z)[A-Za-z0-9_.-]{1,128}")',
        new='SCOPE_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,128}")',
        tests=(f"{END_USER_IDS}::test_a_lone_dash_is_no_scope_value",),
        removes="no user, header or admin value is '-', which the scripts read as every value",
    ),
    Mutation(
        name="end-user-denial-counts-in-the-tenants-ledger",
        file="proxy/store/ledger/lua/common.lua",
        old="  if string.match(field, '^q|agg|%d+|[^|]*|user|') then return KEYS[8] end\n",
        new="",
        tests=(
            f"{MANY_USERS}::test_denied_end_users_are_counted_beside_their_entries[redis]",
            f"{MANY_USERS}::test_denied_end_users_are_counted_beside_their_entries[redis+cluster]",
        ),
        removes="an end user's per-minute denial count is kept in :users, not :ledger",
    ),
    Mutation(
        name="audit-reads-end-user-denial-counts-from-the-ledger",
        file="proxy/store/tenants/redis.py",
        old="            wanted = [n for n in names if (key != ledger) == layout.user_field(n)]\n",
        new="            wanted = names if key == ledger else []\n",
        tests=(f"{MANY_USERS}::test_denied_end_users_are_counted_beside_their_entries[redis]",),
        removes="the audit trail reads an end user's denial count from :users",
    ),
    Mutation(
        name="plain-user-ids-not-recorded-in-the-store",
        file="proxy/budget/end_users.py",
        old="            return PLAIN\n",
        new="            return None  # type: ignore[return-value]\n",
        tests=(f"{END_USER_IDS}::test_plain_and_hashing_replicas_cannot_share_a_store",),
        removes="a plain replica and a hashing one cannot share a store",
    ),
    # -- price catalogues: exact decimals, Portkey's cents, what maps exactly, the diff -------
    Mutation(
        name="catalogue-prices-through-floats",
        file="proxy/policy/catalogue.py",
        old="    scaled = usd.scaleb(scale).normalize()\n",
        new="    scaled = Decimal(repr(float(usd) * 10**scale)).normalize()\n",
        tests=(
            "tests/policy/test_catalogue.py::test_litellm_per_token_floats_become_exact_per_million_decimals",
        ),
        removes="a catalogue's per-token floats become per-1M decimals without float error",
    ),
    Mutation(
        name="portkey-cents-read-as-dollars",
        file="proxy/policy/catalogue_portkey.py",
        old="CENTS = -2\n",
        new="CENTS = 0\n",
        tests=(
            "tests/policy/test_catalogue.py::test_portkey_cents_per_token_become_usd_per_million",
        ),
        removes="Portkey's prices are cents per token (and per tool call)",
    ),
    Mutation(
        name="catalogue-model-globs-ignored",
        file="proxy/policy/catalogue.py",
        old="    return not wanted or any(fnmatchcase(name, glob) for glob in wanted)\n",
        new="    return True\n",
        tests=(
            "tests/policy/test_catalogue.py::test_model_globs_select_by_name",
            "tests/processes/test_prices_cli.py::test_import_prints_a_models_block_naming_its_source_and_reports_the_rest",
        ),
        removes="--models imports (and compares) only the models its globs name",
    ),
    Mutation(
        name="catalogue-tier-factor-from-unequal-multiples",
        file="proxy/policy/catalogue.py",
        old="    if len(ratios) != 1:\n",
        new="    if not ratios:\n",
        tests=(
            "tests/policy/test_catalogue.py::test_a_service_tier_whose_prices_are_not_one_multiple_is_left_out",
        ),
        removes="a service tier is imported as a factor only when every price is one multiple",
    ),
    Mutation(
        name="catalogue-dearer-reasoning-imported",
        file="proxy/policy/catalogue.py",
        old="    if reasoning > output:\n",
        new="    if False:\n",
        tests=(
            "tests/policy/test_catalogue.py::test_prices_the_policy_cannot_hold_leave_the_model_out",
        ),
        removes="a model whose reasoning tokens cost more than output is left out",
    ),
    Mutation(
        name="catalogue-cache-write-below-input-imported",
        file="proxy/policy/catalogue.py",
        old='        if kind in rates and rates[kind] < rates["input"]:\n',
        new="        if False:\n",
        tests=(
            "tests/policy/test_catalogue.py::test_a_cache_write_below_the_input_price_is_left_out",
        ),
        removes="a cache write priced below input (Portkey's 0 placeholder) is not imported",
    ),
    Mutation(
        name="litellm-threshold-in-kibitokens",
        file="proxy/policy/catalogue_litellm.py",
        old='    above = int(found["k"]) * 1000 if found["k"] else None\n',
        new='    above = int(found["k"]) * 1024 if found["k"] else None\n',
        tests=(
            "tests/policy/test_catalogue.py::test_litellm_prices_above_a_prompt_size_become_the_long_context_tier",
        ),
        removes="LiteLLM's _above_200k_tokens is above 200,000 prompt tokens",
    ),
    Mutation(
        name="price-diff-misses-differing-prices",
        file="proxy/policy/price_diff.py",
        old="        if mine != other:\n",
        new="        if False:\n",
        tests=(
            "tests/policy/test_catalogue.py::test_diff_lists_each_price_that_differs_and_each_model_on_one_side_only",
        ),
        removes="prices diff lists each price that differs",
    ),
    Mutation(
        name="price-diff-misses-models-absent-from-the-catalogue",
        file="proxy/policy/price_diff.py",
        old=(
            '            found.append((ABSENT, name, "priced in the policy, '
            'not in the catalogue"))\n'
        ),
        new="            pass\n",
        tests=(
            "tests/policy/test_catalogue.py::test_diff_lists_each_price_that_differs_and_each_model_on_one_side_only",
        ),
        removes="prices diff lists the policy's models the catalogue does not have",
    ),
    Mutation(
        name="price-diff-misses-models-missing-from-the-policy",
        file="proxy/policy/price_diff.py",
        old=(
            '                found.append((MISSING, name, "in the catalogue, '
            'not priced in the policy"))\n'
        ),
        new="                pass\n",
        tests=(
            "tests/policy/test_catalogue.py::test_diff_lists_each_price_that_differs_and_each_model_on_one_side_only",
        ),
        removes="prices diff --models lists the catalogue's models the policy does not price",
    ),
    Mutation(
        name="price-diff-exits-0-on-differences",
        file="proxy/cli/prices.py",
        old="    return 1 if found else 0\n",
        new="    return 0\n",
        tests=(
            "tests/processes/test_prices_cli.py::test_diff_exits_0_when_equal_and_1_listing_each_difference",
        ),
        removes="prices diff exits 1 when the prices differ (for CI)",
    ),
    Mutation(
        name="litellm-fee-per-request-ignored",
        file="proxy/policy/catalogue_litellm.py",
        old="    elif key.endswith(_PER_CALL) and price:\n",
        new="    elif False:\n",
        tests=("tests/policy/test_catalogue.py::test_a_fee_every_call_pays_leaves_the_model_out",),
        removes="a LiteLLM model with a fee per request is left out",
    ),
    Mutation(
        name="portkey-fixed-cost-ignored",
        file="proxy/policy/catalogue_portkey.py",
        old='        if key == "fixed_cost" and _any_price(config[key]):\n',
        new="        if False:\n",
        tests=("tests/policy/test_catalogue.py::test_a_fee_every_call_pays_leaves_the_model_out",),
        removes="a Portkey model with a fixed cost per request is left out",
    ),
    Mutation(
        name="rollup-calls-not-counted-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  ROLL.add(l.row .. '|calls', 1)\n",
        new="",
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[redis]",),
        removes="a reserve counts a call on each line it takes (Redis)",
    ),
    Mutation(
        name="rollup-calls-not-counted-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='    roll.add(f"{row}|calls", 1)\n',
        new="",
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",),
        removes="a reserve counts a call on each line it takes (memory://)",
    ),
    Mutation(
        name="rollup-peak-summed-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  ROLL.max(l.row .. '|peak', held_now)\n",
        new="  ROLL.add(l.row .. '|peak', held_now)\n",
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[redis]",),
        removes="reserved_peak is the most held at once (Redis)",
    ),
    Mutation(
        name="rollup-peak-summed-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='    roll.max(f"{row}|peak", held)\n',
        new='    roll.add(f"{row}|peak", held)\n',
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",),
        removes="reserved_peak is the most held at once (memory://)",
    ),
    Mutation(
        name="rollup-committed-sum-missing-redis",
        file="proxy/store/ledger/lua/commit.lua",
        old="ROLL.add(ROLL.row(p) .. '|csum', act[unit_of(p)] or 0)",
        new="ROLL.add(ROLL.row(p) .. '|csum', 0)",
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[redis]",),
        removes="a commit adds its actual to committed_sum (Redis)",
    ),
    Mutation(
        name="rollup-committed-sum-missing-memory",
        file="proxy/store/ledger/memory.py",
        old='t.roll.add(f"{row_of(prefix)}|csum", actual.get(prefix.split("|")[2], 0))',
        new='t.roll.add(f"{row_of(prefix)}|csum", 0)',
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",),
        removes="a commit adds its actual to committed_sum (memory://)",
    ),
    Mutation(
        name="rollup-line-denial-not-counted-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="    ROLL.add(l.row .. '|' .. kind .. ((kind == 'deny') and '|budget' or ''), 1)\n",
        new="",
        tests=(
            f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[redis]",
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[redis]",
        ),
        removes="a line's denials and would-be denials count on it (Redis)",
    ),
    Mutation(
        name="rollup-line-denial-not-counted-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='        roll.add(f"{row}|deny|budget" if kind == "deny" else f"{row}|shadow", 1)\n',
        new="",
        tests=(
            f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[memory]",
        ),
        removes="a line's denials and would-be denials count on it (memory://)",
    ),
    Mutation(
        name="rollup-quota-denial-not-counted-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="((kind == 'deny') and ('|quota:' .. gate.quota) or '')",
        new="((kind == 'deny') and '|quota' or '')",
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[redis]",
        ),
        removes="a quota's denials count on the tenant-wide row (Redis)",
    ),
    Mutation(
        name="rollup-quota-denial-not-counted-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='f"{TENANT_ROW}|deny|quota:{quota}" if kind == "deny"',
        new='f"{TENANT_ROW}|deny|quota" if kind == "deny"',
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[memory]",
        ),
        removes="a quota's denials count on the tenant-wide row (memory://)",
    ),
    Mutation(
        name="rollup-status-denial-not-counted-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  ROLL.add('-|-|-|-|deny|tenant_' .. status, 1)\n",
        new="",
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[redis]",
        ),
        removes="a tenant-status denial counts on the tenant-wide row (Redis)",
    ),
    Mutation(
        name="rollup-status-denial-not-counted-memory",
        file="proxy/store/ledger/memory.py",
        old='            t.roll.add(f"{TENANT_ROW}|deny|{reason}", 1)\n',
        new="",
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[memory]",
        ),
        removes="a tenant-status denial counts on the tenant-wide row (memory://)",
    ),
    Mutation(
        name="rollup-degrade-not-counted-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  if rule then ROLL.add(l.row .. '|degr|' .. rule, 1) end\n",
        new="",
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[redis]",
        ),
        removes="the degrade rule that shaped a call is counted (Redis)",
    ),
    Mutation(
        name="rollup-degrade-not-counted-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='    if rule is not None:\n        roll.add(f"{row}|degr|{rule}", 1)\n',
        new="",
        tests=(
            f"{ROLLUPS}test_denials_degrades_and_shadow_are_counted_where_they_were_made[memory]",
        ),
        removes="the degrade rule that shaped a call is counted (memory://)",
    ),
    Mutation(
        name="rollup-runs-one-row-per-value-redis",
        file="proxy/store/ledger/lua/common.lua",
        old="  if ROLL_STAR[level] then value = '*' end\n",
        new="",
        tests=(f"{ROLLUPS}test_runs_and_end_users_are_one_row_per_level[redis]",),
        removes="runs and end users are one '*' row per level (Redis)",
    ),
    Mutation(
        name="rollup-runs-one-row-per-value-memory",
        file="proxy/store/ledger/rollups.py",
        old="{'*' if level in STAR else value}",
        new="{value}",
        tests=(f"{ROLLUPS}test_runs_and_end_users_are_one_row_per_level[memory]",),
        removes="runs and end users are one '*' row per level (memory://)",
    ),
    Mutation(
        name="rollup-value-peak-last-not-most-redis",
        file="proxy/store/ledger/lua/common.lua",
        old="    ROLL.max(row .. '|vpeak', spent)\n",
        new="    ROLL.set[row .. '|vpeak'] = fmt(spent)\n",
        tests=(f"{ROLLUPS}test_runs_and_end_users_are_one_row_per_level[redis]",),
        removes="a '*' row's value_peak is the most one value spent (Redis)",
    ),
    Mutation(
        name="rollup-value-peak-last-not-most-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='            self.max(f"{row}|vpeak", spent)\n',
        new='            self.set[f"{row}|vpeak"] = str(spent)\n',
        tests=(f"{ROLLUPS}test_runs_and_end_users_are_one_row_per_level[memory]",),
        removes="a '*' row's value_peak is the most one value spent (memory://)",
    ),
    Mutation(
        name="rollup-settles-in-utc-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  redis.call('HSET', KEYS[5], 'day_offset_min', fmt(OFFSET))\n",
        new="",
        tests=(f"{ROLLUPS}test_the_day_is_the_tenants_local_day_even_for_settles[redis]",),
        removes="a settle falls on the tenant's local day (Redis)",
    ),
    Mutation(
        name="rollup-settles-in-utc-memory",
        file="proxy/store/ledger/memory.py",
        old='            t.meta["day_offset_min"] = str(request.utc_offset_min)\n',
        new="            pass\n",
        tests=(f"{ROLLUPS}test_the_day_is_the_tenants_local_day_even_for_settles[memory]",),
        removes="a settle falls on the tenant's local day (memory://)",
    ),
    Mutation(
        name="rollup-limit-not-carried-redis",
        file="proxy/store/ledger/lua/rollup.lua",
        old="      out[#out + 1] = before[i] or '0'\n",
        new="      out[#out + 1] = '0'\n",
        tests=(f"{ROLLUPS}test_a_day_without_a_reserve_takes_the_limit_of_the_day_before[redis]",),
        removes="a day without a reserve takes the day before's limit (Redis)",
    ),
    Mutation(
        name="rollup-limit-not-carried-memory",
        file="proxy/store/ledger/rollups_memory.py",
        old='h.fields[limit] = "0" if lender is None else lender.fields.get(limit, "0")',
        new='h.fields[limit] = "0"',
        tests=(f"{ROLLUPS}test_a_day_without_a_reserve_takes_the_limit_of_the_day_before[memory]",),
        removes="a day without a reserve takes the day before's limit (memory://)",
    ),
    Mutation(
        name="rollup-charges-not-spent-redis",
        file="proxy/store/ledger/lua/common.lua",
        old="      ROLL.charge(p, x, redis.call('HINCRBY', hkey(p), p .. '|spent', fmt(x)))\n",
        new="      redis.call('HINCRBY', hkey(p), p .. '|spent', fmt(x))\n",
        tests=(
            f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[redis]",
            f"{ROLLUPS}test_expiry_charges_and_late_differences_are_spent_that_day[redis]",
        ),
        removes="commits and expiry charges are the day's spent (Redis)",
    ),
    Mutation(
        name="rollup-late-difference-not-spent-memory",
        file="proxy/store/ledger/memory_state.py",
        old="            self.roll.charge("
        "prefix, added[prefix], spent, self.current(prefix, now))\n",
        new="",
        tests=(f"{ROLLUPS}test_expiry_charges_and_late_differences_are_spent_that_day[memory]",),
        removes="a late commit's difference is the day's spent (memory://)",
    ),
    Mutation(
        name="rollup-expiry-not-flushed-memory",
        file="proxy/store/ledger/sweep_memory.py",
        old="t.flush_roll(now, self.settings)  # the expiry charges written, even on an error",
        new="t.roll.clear()",
        tests=(f"{ROLLUPS}test_expiry_charges_and_late_differences_are_spent_that_day[memory]",),
        removes="an expiry charge is the day's spent (memory://)",
    ),
    Mutation(
        name="rollup-read-past-retention",
        file="proxy/store/ledger/rollups.py",
        old="    return range(max(first, kept), last + 1)\n",
        new="    return range(first, last + 1)\n",
        tests=(
            f"{ROLLUPS}test_days_past_the_retention_are_gone[memory]",
            f"{ROLLUPS}test_days_past_the_retention_are_gone[redis]",
        ),
        removes="a day past the retention is not read",
    ),
    Mutation(
        name="rollup-key-never-expires-redis",
        file="proxy/store/ledger/lua/rollup.lua",
        old="  redis.call('PEXPIREAT', key,",
        new="  redis.call('PERSIST', key) -- ",
        tests=(f"{ROLLUPS}test_days_past_the_retention_are_gone[redis]",),
        removes="a day's hash expires the retention after the day ends (Redis)",
    ),
    Mutation(
        name="rollup-memory-days-never-purged",
        file="proxy/store/ledger/rollups_memory.py",
        old="        self.purge(now)\n        today",
        new="        today",
        tests=(f"{ROLLUPS}test_the_memory_store_keeps_no_more_days_than_the_retention",),
        removes="the memory store keeps no more days than the retention",
    ),
    Mutation(
        name="rollup-late-difference-not-spent-redis",
        file="proxy/store/ledger/lua/common.lua",
        old="    ROLL.charge(p, added[p], redis.call('HINCRBY',",
        new="    (function(_, _, x) return x end)(p, added[p], redis.call('HINCRBY',",
        tests=(f"{ROLLUPS}test_expiry_charges_and_late_differences_are_spent_that_day[redis]",),
        removes="a late commit's difference is the day's spent (Redis)",
    ),
    Mutation(
        name="rollup-charges-not-spent-memory",
        file="proxy/store/ledger/memory_state.py",
        old="self.roll.charge(prefix, charge.get(unit, 0), spent, self.current(prefix, now))",
        new="pass",
        tests=(
            f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",
            f"{ROLLUPS}test_expiry_charges_and_late_differences_are_spent_that_day[memory]",
        ),
        removes="commits and expiry charges are the day's spent (memory://)",
    ),
    Mutation(
        name="history-retention-not-carried-to-the-stores",
        file="proxy/policy/schema.py",
        old="        history_retention_ms=spec.history.retention_days * DAY_MS,\n",
        new="",
        tests=("tests/policy/test_policy.py::test_history_retention_reaches_the_stores_in_days",),
        removes="history.retention_days reaches the stores",
    ),
    Mutation(
        name="rollup-stale-reserve-records-its-zone-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="then return reply('stale', '-', '-', {}) end\n",
        new=(
            "then\n  redis.call('HSET', KEYS[5], 'day_offset_min', fmt(OFFSET))\n"
            "  DAY_OFFSET = OFFSET\n  return reply('stale', '-', '-', {})\nend\n"
        ),
        tests=(f"{ROLLUPS}test_a_stale_or_repeated_reserve_adds_nothing[redis]",),
        removes="a stale reserve writes nothing, not even the tenant's zone (Redis)",
    ),
    Mutation(
        name="rollup-stale-reserve-records-its-zone-memory",
        file="proxy/store/ledger/memory.py",
        old="return reserve_result(request, t.status, DENIED, {}, pairs, (), stale=True)\n",
        new=(
            "return t.meta.update(day_offset_min=str(request.utc_offset_min)) or reserve_result("
            "request, t.status, DENIED, {}, pairs, (), stale=True)\n"
        ),
        tests=(f"{ROLLUPS}test_a_stale_or_repeated_reserve_adds_nothing[memory]",),
        removes="a stale reserve writes nothing, not even the tenant's zone (memory://)",
    ),
    Mutation(
        name="rollup-since-after-today-refused",
        file="proxy/store/ledger/rollups.py",
        old="    if until is not None and last < first:\n",
        new="    if last < first:\n",
        tests=(f"{ROLLUPS}test_a_day_of_calls_is_summed_exactly[memory]",),
        removes="a range starting after the tenant's today reads nothing",
    ),
    Mutation(
        name="rollup-memory-sweeper-keeps-old-days",
        file="proxy/store/ledger/sweep_memory.py",
        old="            t.days.purge(now)\n",
        new="",
        tests=(f"{ROLLUPS}test_the_memory_sweeper_forgets_days_past_the_retention",),
        removes="the memory sweeper forgets days past the retention",
    ),
    Mutation(
        name="describe-omits-history-retention",
        file="proxy/policy/describe.py",
        old="{r.history_retention_ms // 86_400_000} days",
        new="400 days",
        tests=("tests/policy/test_policy.py::test_history_retention_reaches_the_stores_in_days",),
        removes="`check` says how long the history is kept",
    ),
    Mutation(
        name="report-percentile-not-nearest-rank",
        file="proxy/reports/figures.py",
        old="    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]\n",
        new="    return ordered[min(len(ordered) - 1, percent * len(ordered) // 100)]\n",
        tests=(f"{REPORT_FIGURES}::test_nearest_rank_percentile",),
        removes="a report's daily spend percentiles are nearest-rank",
    ),
    Mutation(
        name="report-days-without-rows-not-counted",
        file="proxy/reports/figures.py",
        old="    return [by_day[d] for d in window.dates() if d >= since]\n",
        new="    return [by_day[d] for d in window.dates() if d in by_day] or [0]\n",
        tests=(f"{REPORT_FIGURES}::test_days_without_rows_count_as_zero_spend",),
        removes="every day of a report's window counts, a day without a rollup as zero spend",
    ),
    Mutation(
        name="report-hit-ignores-the-period-spend",
        file="proxy/reports/figures.py",
        old="    reached = row.limit > 0 and row.value_peak >= row.limit\n",
        new="    reached = False\n",
        tests=(
            f"{REPORT_FIGURES}::test_a_day_hits_the_limit_by_spend_or_by_a_would_be_denial_alone",
        ),
        removes="a day the period's spend reached the limit is a day the limit was hit",
    ),
    Mutation(
        name="report-hit-ignores-would-be-denials",
        file="proxy/reports/figures.py",
        old=" or row.shadow_denials > 0 or reached\n",
        new=" or reached\n",
        tests=(
            f"{REPORT_FIGURES}::test_a_day_hits_the_limit_by_spend_or_by_a_would_be_denial_alone",
        ),
        removes="a day with a shadow would-be denial is a day the limit was hit",
    ),
    Mutation(
        name="report-over-reservation-inverted",
        file="proxy/reports/figures.py",
        old="    exact = Decimal(reserved) / Decimal(committed)\n",
        new="    exact = Decimal(committed) / Decimal(reserved)\n",
        tests=(f"{REPORT_FIGURES}::test_a_steady_tenant_at_three_dollars_a_day",),
        removes="over-reservation is reserved over committed",
    ),
    Mutation(
        name="report-no-headroom",
        file="proxy/reports/figures.py",
        old="HEADROOM = Fraction(6, 5)\n",
        new="HEADROOM = Fraction(1)\n",
        tests=(f"{REPORT_FIGURES}::test_a_steady_tenant_at_three_dollars_a_day",),
        removes="a recommended limit leaves 20 % headroom",
    ),
    Mutation(
        name="report-month-is-thirty-days",
        file="proxy/reports/figures.py",
        old="        return (self.end - self.start).days\n",
        new="        return 30\n",
        tests=(f"{REPORT_FIGURES}::test_a_steady_tenant_at_three_dollars_a_day",),
        removes="p95-daily multiplies by the current period's own length",
    ),
    Mutation(
        name="report-no-observed-max-floor",
        file="proxy/reports/figures.py",
        old="    if never and peak > rec.units:\n",
        new="    if False:\n",
        tests=(
            f"{REPORT_FIGURES}::test_a_line_never_denied_is_never_recommended_below_its_observed_max",
        ),
        removes="a line never denied is never recommended below its observed max",
    ),
    Mutation(
        name="report-observed-max-floor-despite-would-be-denials",
        file="proxy/reports/figures.py",
        old="    never = not denied and not any(r.shadow_denials for r in rows)\n",
        new="    never = not denied\n",
        tests=(f"{REPORT_FIGURES}::test_a_shadow_tenant_sees_what_enforcing_would_have_done",),
        removes="a shadow line's would-be denials lift the observed-max floor",
    ),
    Mutation(
        name="report-no-denied-at-limit-floor",
        file="proxy/reports/figures.py",
        old="    if denied and last.limit > rec.units:\n",
        new="    if False:\n",
        tests=(
            f"{REPORT_FIGURES}::test_a_spike_sets_max_and_p95_and_one_day_hit_the_limit",
            f"{REPORT_HISTORY}::test_every_figure_of_the_seeded_history_equals_the_hand_worked_one",
        ),
        removes="a line that denied calls is never recommended below its limit",
    ),
    Mutation(
        name="report-recommendation-not-rounded-to-a-cent",
        file="proxy/reports/figures.py",
        old="    step = CENT.get(unit, 1)\n",
        new="    step = 1\n",
        tests=(f"{REPORT_FIGURES}::test_a_recommendation_is_rounded_up_to_a_cent",),
        removes="a USD recommendation is rounded up to a cent",
    ),
    Mutation(
        name="report-forecast-ignores-the-recent-rate",
        file="proxy/reports/figures.py",
        old="    ahead = spent + -(-sum(recent) * left // len(recent))\n",
        new="    ahead = spent\n",
        tests=(f"{REPORT_FIGURES}::test_a_steady_tenant_at_three_dollars_a_day",),
        removes="the forecast adds the last week's mean daily spend for each day left",
    ),
    Mutation(
        name="report-forecast-not-capped-when-enforced",
        file="proxy/reports/figures.py",
        old="    return ahead if ceiling is None else min(ahead, max(ceiling, spent))\n",
        new="    return ahead\n",
        tests=(
            f"{REPORT_FIGURES}::test_an_enforced_forecast_stops_at_the_limit_a_shadow_one_does_not",
        ),
        removes="an enforced line's forecast stops at its limit",
    ),
    Mutation(
        name="report-shadow-refuses-whole-days",
        file="proxy/reports/figures.py",
        old="    refused = sum(max(0, min(r.spent, r.value_peak - r.limit)) for r in rows)\n",
        new="    refused = sum(r.spent for r in rows if r.shadow_denials)\n",
        tests=(f"{REPORT_FIGURES}::test_a_shadow_tenant_sees_what_enforcing_would_have_done",),
        removes="the spend enforcing would have refused is each day's spend beyond the limit",
    ),
    Mutation(
        name="report-spent-this-period-not-read",
        file="proxy/reports/tenant.py",
        old="spent.get(key, 0), enforced",
        new="0, enforced",
        tests=(
            f"{REPORT_HISTORY}::test_every_figure_of_the_seeded_history_equals_the_hand_worked_one",
        ),
        removes="spent this period is the line's spend in its current period, read from the ledger",
    ),
    Mutation(
        name="report-window-unbounded",
        file="proxy/reports/read.py",
        old="    if not 1 <= days <= MAX_DAYS:\n",
        new="    if not 1 <= days:\n",
        tests=(
            f"{REPORT_SURFACES}::test_the_admin_route_refuses_bad_queries_saying_what_was_wrong",
        ),
        removes="a report's window is at most the longest rollup retention",
    ),
    Mutation(
        name="report-dashboard-without-the-shadow-table",
        file="proxy/admin/dashboard/report_page.py",
        old="    if report.shadowed:\n",
        new="    if False:\n",
        tests=(f"{REPORT_SURFACES}::test_the_dashboard_shows_the_report_in_headless_chromium",),
        removes="the dashboard shows a shadow tenant what enforcing would have done",
    ),
    Mutation(
        name="demo-without-the-limit-report",
        file="proxy/cli/demo.py",
        old="    _print_limit_reports(reports)\n",
        new="",
        tests=(
            "tests/processes/test_cli.py::test_demo_stops_the_runaway_tenant_and_spares_the_others",
        ),
        removes="the demo ends with the limit report for customer-47 and a quiet tenant",
    ),
    Mutation(
        name="report-degradations-of-the-last-day-only",
        file="proxy/reports/figures.py",
        old="        degradations=_summed(r.degradations for r in rows),\n",
        new="        degradations=dict(rows[-1].degradations),\n",
        tests=(f"{REPORT_FIGURES}::test_denials_and_degradations_are_summed_by_reason_and_rule",),
        removes="a report sums a line's degradations over the window, by rule",
    ),
    Mutation(
        name="report-tenant-wide-row-as-a-line",
        file="proxy/reports/tenant.py",
        old="        if row.level != TENANT_WIDE:\n",
        new="        if True:\n",
        tests=(f"{REPORT_FIGURES}::test_tenant_wide_denials_are_reported_apart_from_the_lines",),
        removes="the tenant-wide row's denials are reported apart from the budget lines",
    ),
    Mutation(
        name="a-repeated-commit-adds-an-outbox-entry",
        file="proxy/store/ledger/lua/commit.lua",
        old="if r.state == 'COMMITTED' then return { 'COMMITTED', '0', r.actual } end\n",
        new=(
            "if r.state == 'COMMITTED' then\n"
            "  if event ~= '-' then outbox({ 'kind', 'settle', 'event', event, 'reservation', id,"
            " 'charged', r.actual }) end\n"
            "  return { 'COMMITTED', '0', r.actual }\nend\n"
        ),
        tests=(f"{USAGE}{USAGE_ONCE}[redis]",),
        removes="a repeated commit adds no usage event",
    ),
    Mutation(
        name="a-commit-writes-no-usage-event",
        file="proxy/store/ledger/lua/commit.lua",
        old="if event ~= '-' then\n  outbox({ 'kind', 'settle', 'state', 'COMMITTED',",
        new="if false then\n  outbox({ 'kind', 'settle', 'state', 'COMMITTED',",
        tests=(f"{USAGE}{USAGE_ONCE}[redis]",),
        removes="a commit writes its usage event to the outbox in the same script",
    ),
    Mutation(
        name="a-release-writes-no-usage-event",
        file="proxy/store/ledger/lua/release.lua",
        old="if event ~= '-' then\n",
        new="if false then\n",
        tests=(f"{USAGE}{USAGE_ONCE}[redis]",),
        removes="a release writes its usage event to the outbox in the same script",
    ),
    Mutation(
        name="a-memory-commit-writes-no-usage-event",
        file="proxy/store/ledger/memory.py",
        old=(
            '        self._settled_event(reservation, event, eid, "COMMITTED", '
            "sorted_amounts(charged))\n"
        ),
        new="",
        tests=(f"{USAGE}{USAGE_ONCE}[memory]",),
        removes="a commit on memory:// writes its usage event to the outbox",
    ),
    Mutation(
        name="an-expiry-writes-no-usage-event",
        file="proxy/store/ledger/lua/sweep.lua",
        old="  if events then\n",
        new="  if false then\n",
        tests=(f"{USAGE}{USAGE_EXPIRY}[redis]",),
        removes="an expiry the sweeper charges writes a usage event",
    ),
    Mutation.never(
        name="a-memory-expiry-writes-no-usage-event",
        file="proxy/store/ledger/sweep_memory.py",
        old="        if self.usage_events:\n",
        tests=(f"{USAGE}{USAGE_EXPIRY}[memory]",),
        removes="an expiry on memory:// writes a usage event",
    ),
    Mutation(
        name="expiries-write-usage-events-while-events-are-off",
        file="proxy/store/ledger/sweep_redis.py",
        old="bound = self.outbox_bound if self.usage_events else 0\n",
        new="bound = self.outbox_bound\n",
        tests=(f"{USAGE}{USAGE_EXPIRY}[redis]",),
        removes="with events off the sweeper writes no usage events",
    ),
    Mutation.never(
        name="calls-write-usage-events-while-events-are-off",
        file="proxy/gateway/settle.py",
        old="    if not flight.policy.events.sinks or reservation is None:\n",
        tests=(f"{USAGE}test_events_off_write_no_outbox_entry[redis]",),
        removes="with no sink no usage event is built or written",
    ),
    Mutation.always(
        name="a-settle-does-not-index-its-outbox",
        file="proxy/store/ledger/redis.py",
        old='        if event is None or reply[1] != "1":\n',
        tests=(f"{USAGE}{USAGE_CALLS}[redis]",),
        removes="a settle that wrote an event indexes its tenant for the sender",
    ),
    Mutation.never(
        name="the-outbox-rescan-reads-only-the-index",
        file="proxy/store/ledger/outbox_redis.py",
        old="        if rescan:\n            await self._rescan()\n",
        tests=(f"{USAGE}test_a_tenant_whose_index_write_was_lost_is_found_by_a_rescan",),
        removes="a rescan finds a tenant whose outbox index write a crash cut off",
    ),
    Mutation(
        name="delivered-events-are-not-acknowledged",
        file="proxy/gateway/usage_sender.py",
        old="        await self.ledger.outbox_ack(entries)\n",
        new="",
        tests=(f"{USAGE}{USAGE_CALLS}[redis]",),
        removes="events a sink took are deleted from the outbox",
    ),
    Mutation(
        name="a-refused-batch-is-not-retried",
        file="proxy/gateway/usage_sender.py",
        old=(
            "            took |= {sink for sink in waiting"
            " if await self._to(session, sink, events)}\n"
        ),
        new="            took |= set(waiting)\n",
        tests=(
            f"{USAGE}test_a_sink_that_refuses_gets_the_batch_again_and_nothing_is_lost[memory]",
        ),
        removes="a batch a sink refused is retried until it takes it",
    ),
    Mutation(
        name="usage-webhook-batches-unsigned",
        file="proxy/gateway/usage_sinks.py",
        old="Webhook(sink.url, sink.secret_env), body, os.environ)\n",
        new="Webhook(sink.url, None), body, os.environ)\n",
        tests=(f"{USAGE}{USAGE_CALLS}[memory]",),
        removes="webhook batches are signed as alerts are",
    ),
    Mutation.never(
        name="the-jsonl-sink-never-rotates",
        file="proxy/gateway/usage_sinks.py",
        old="            if size and size + len(line) > sink.max_bytes:\n",
        tests=(f"{USAGE}test_jsonl_and_openmeter_sinks_each_get_every_event",),
        removes="the jsonl file is rotated before it passes max_bytes",
    ),
    Mutation(
        name="openmeter-without-its-token",
        file="proxy/gateway/usage_sinks.py",
        old='    headers = {"Content-Type": BATCH_TYPE, "Authorization": f"Bearer {token}"}\n',
        new='    headers = {"Content-Type": BATCH_TYPE}\n',
        tests=(f"{USAGE}test_jsonl_and_openmeter_sinks_each_get_every_event",),
        removes="openmeter gets the token from its token_env as a Bearer token",
    ),
    Mutation.never(
        name="no-backlog-alert",
        file="proxy/gateway/usage_sender.py",
        old="        if worse and self.alerts is not None:\n",
        tests=(f"{USAGE}test_a_backed_up_outbox_shows_in_the_metric_and_alerts",),
        removes="an outbox at events.max_pending fires events.backlog",
    ),
    Mutation.never(
        name="the-memory-outbox-is-unbounded",
        file="proxy/store/ledger/outbox.py",
        old="        if len(self._outbox) >= self.outbox_bound:\n",
        tests=(f"{USAGE}test_the_memory_outbox_drops_its_oldest_entry_above_its_bound",),
        removes="memory:// drops its oldest usage event above events.max_pending",
    ),
    Mutation(
        name="a-spilled-charge-loses-its-event",
        file="proxy/gateway/spill.py",
        old="                    committed = await _write(ledger, request, charge, event)\n",
        new="                    committed = await _write(ledger, request, charge, None)\n",
        tests=(f"{USAGE}test_a_spilled_charge_is_written_with_its_event[redis]",),
        removes="a spilled charge is written with its call's usage event",
    ),
    Mutation.always(
        name="an-action-settles-without-a-usage-event",
        file="proxy/actions/routes.py",
        old="    if not policy.events.sinks:\n",
        tests=(f"{USAGE}test_an_action_reservation_settled_is_one_event[redis]",),
        removes="a settled action reservation is one usage event",
    ),
    Mutation(
        name="usd-amount-in-units",
        file="proxy/gateway/usage_events.py",
        old='    places = USD_PLACES if unit == "USD" else 0\n',
        new="    places = 0\n",
        tests=(f"{USAGE}{USAGE_CALLS}[memory]",),
        removes="an event's USD amount is in dollars",
    ),
    Mutation(
        name="the-memory-outbox-keeps-acknowledged-events",
        file="proxy/store/ledger/outbox.py",
        old="        while self._outbox and self._outbox[0].entry_id in done:\n",
        new="        while False:\n",
        tests=(f"{USAGE}{USAGE_ONCE}[memory]",),
        removes="memory:// deletes the events a sender acknowledged",
    ),
    Mutation.never(
        name="two-senders-drain-one-store",
        file="proxy/store/ledger/outbox_redis.py",
        old="        if await self._client.get(layout.OUTBOX_SENDER) != owner:\n",
        tests=(f"{USAGE}test_one_sender_holds_the_outbox_until_its_claim_lapses",),
        removes="one process at a time sends a store's usage events",
    ),
    Mutation(
        name="a-failed-outbox-index-write-fails-the-settle",
        file="proxy/store/ledger/redis.py",
        old="        except REDIS.foreign as exc:\n",
        new="        except ZeroDivisionError as exc:\n",
        tests=(f"{USAGE}test_a_settle_whose_index_write_fails_is_done_and_its_event_kept",),
        removes="a settle is done (and reports so) when only its outbox index write fails",
    ),
    Mutation(
        name="log-line-written-at-once",
        file="proxy/gateway/logs.py",
        old="        if loop is None:\n            self.flush()\n",
        new="        if True:\n            self.flush()\n",
        tests=(f"{LOG_LINES}::test_the_lines_of_one_loop_iteration_go_out_in_one_write_after_it",),
        removes="the lines of one loop iteration are written in one write, after it",
    ),
    Mutation(
        name="log-lines-never-flushed-by-the-loop",
        file="proxy/gateway/logs.py",
        old="            loop.call_soon(self.flush)\n",
        new="            pass\n",
        tests=(f"{LOG_LINES}::test_the_lines_of_one_loop_iteration_go_out_in_one_write_after_it",),
        removes="buffered log lines are written at the end of the loop iteration",
    ),
    Mutation(
        name="log-line-without-a-loop-waits",
        file="proxy/gateway/logs.py",
        old="        if loop is None:\n            self.flush()\n",
        new="        if loop is None:\n            pass\n",
        tests=(
            f"{LOG_LINES}"
            "::test_a_line_logged_with_no_loop_running_is_written_at_once_after_those_buffered",
        ),
        removes="a line logged with no loop running is written at once, after those buffered",
    ),
    Mutation(
        name="logs-flush-leaves-the-buffer",
        file="proxy/gateway/logs.py",
        old="    for handler in logging.getLogger().handlers:\n        handler.flush()\n",
        new="    return\n",
        tests=(f"{LOG_LINES}::test_flush_writes_what_the_root_logger_still_buffers",),
        removes="logs.flush() writes the lines still buffered (serve calls it as it ends)",
    ),
    Mutation(
        name="redacted-call-line-still-spliced",
        file="proxy/gateway/logs.py",
        old="            record.__dict__.pop(JSON_OBJECT, None)\n",
        new="            pass\n",
        tests=(
            f"{LOG_LINES}"
            "::test_a_json_object_message_is_spliced_into_the_json_line_unless_redaction_cut_it",
        ),
        removes="a call line the redaction changed is quoted, not spliced unchecked",
    ),
    Mutation(
        name="tally-counts-a-bound-in-the-next-bucket",
        file="proxy/gateway/tallies.py",
        old="        self.counts[bisect_left(self.bounds, amount)] += 1\n",
        new=(
            "        self.counts[bisect_left(self.bounds, amount) + (amount in self.bounds)] += 1\n"
        ),
        tests=(f"{TALLIES}::test_tallies_expose_what_prometheus_client_would",),
        removes="an observation equal to a bucket's bound is counted in that bucket (le)",
    ),
    Mutation(
        name="tally-counter-without-created-series",
        file="proxy/gateway/tallies.py",
        old=(
            '        metric.add_sample(name + "_total", labels, self.value)\n'
            "        if _client._use_created:\n"
        ),
        new='        metric.add_sample(name + "_total", labels, self.value)\n        if False:\n',
        tests=(f"{TALLIES}::test_tallies_expose_what_prometheus_client_would",),
        removes="a tallied counter shows its _created series, as prometheus-client's does",
    ),
    Mutation(
        name="tally-counter-takes-negative-increments",
        file="proxy/gateway/tallies.py",
        old="        if amount < 0:\n",
        new="        if False:\n",
        tests=(
            f"{TALLIES}::test_a_counter_refuses_a_negative_increment_as_prometheus_client_does",
        ),
        removes="a tallied counter refuses a negative increment",
    ),
    Mutation(
        name="tally-level-never-falls",
        file="proxy/gateway/tallies.py",
        old="        self.value -= 1\n",
        new="        pass\n",
        tests=(
            f"{TALLIES}::test_tallies_expose_what_prometheus_client_would",
            f"{TALLIES}::test_a_scrape_right_after_a_burst_counts_every_call_of_it",
        ),
        removes="calls in flight fall when a call ends",
    ),
    Mutation(
        name="log-time-formatted-once-for-good",
        file="proxy/gateway/logs.py",
        old="        if second != self._second:\n",
        new="        if self._second < 0:\n",
        tests=(
            f"{LOG_LINES}::test_each_line_has_its_own_time_though_the_seconds_are_formatted_once",
        ),
        removes="a log line's time is formatted anew when its second changes",
    ),
    Mutation(
        name="log-write-failure-raised-into-the-loop",
        file="proxy/gateway/logs.py",
        old="            except Exception:\n                self._failed(chunk)\n",
        new="            except ZeroDivisionError:\n                self._failed(chunk)\n",
        tests=(f"{LOG_LINES}::test_a_write_that_fails_is_reported_once_and_logging_goes_on",),
        removes="a log write that fails is reported once, not logged again each loop iteration",
    ),
    Mutation(
        name="log-setup-drops-buffered-lines",
        file="proxy/gateway/logs.py",
        old="    flush()  # what the handlers replaced still hold\n",
        new="",
        tests=(
            f"{LOG_LINES}::test_setting_up_logging_again_first_writes_what_the_old_handler_holds",
        ),
        removes="replacing the log handlers first writes what the old ones still buffer",
    ),
    Mutation(
        name="opentelemetry-on-without-an-endpoint",
        file="proxy/gateway/telemetry.py",
        old='    return any(environ.get(name, "").strip() for name in ENDPOINTS)\n',
        new="    return True\n",
        tests=(
            f"{TRACING}::test_off_by_default_nothing_of_opentelemetry_is_loaded_or_run",
            f"{TRACING}::test_enabled_by_any_otlp_endpoint_unless_disabled",
        ),
        removes="OpenTelemetry is off (nothing loaded or run) unless an OTLP endpoint is set",
    ),
    Mutation.never(
        name="opentelemetry-sdk-disabled-ignored",
        file="proxy/gateway/telemetry.py",
        old='    if environ.get(DISABLED, "").strip().lower() == "true":\n',
        tests=(
            f"{TRACING}::test_off_by_default_nothing_of_opentelemetry_is_loaded_or_run",
            f"{TRACING}::test_enabled_by_any_otlp_endpoint_unless_disabled",
        ),
        removes="OTEL_SDK_DISABLED=true keeps OpenTelemetry off",
    ),
    Mutation(
        name="opentelemetry-missing-packages-not-explained",
        file="proxy/gateway/telemetry.py",
        old="    except ImportError as exc:\n",
        new="    except SettingsError as exc:\n",
        tests=(
            f"{TRACING}::test_an_endpoint_without_the_packages_is_refused_saying_what_to_install",
        ),
        removes="an OTLP endpoint without the otel extra is refused, saying what to install",
    ),
    Mutation(
        name="call-span-ignores-the-client-traceparent",
        file="proxy/gateway/tracing.py",
        old="        parent = _PROPAGATOR.extract(request.headers)\n",
        new="        parent = None\n",
        tests=(
            f"{TRACING}::test_call_span_continues_the_client_trace_with_genai_attributes[memory]",
        ),
        removes="a call's span is the child of the client's traceparent",
    ),
    Mutation.never(
        name="upstream-sent-the-client-traceparent",
        file="proxy/gateway/pipeline.py",
        old="    if traceparent is not None:\n",
        tests=(
            f"{TRACING}::test_call_span_continues_the_client_trace_with_genai_attributes[memory]",
            f"{TRACING}::test_call_without_traceparent_starts_a_trace_the_provider_continues",
        ),
        removes="a traced call sends the upstream its upstream span's traceparent",
    ),
    Mutation(
        name="upstream-span-id-not-the-one-sent",
        file="proxy/gateway/tracing.py",
        old="        self.ids.chosen = call.upstream_id\n",
        new="",
        tests=(f"{TRACING}::test_call_without_traceparent_starts_a_trace_the_provider_continues",),
        removes="the upstream span has the id its traceparent named to the provider",
    ),
    Mutation(
        name="no-reserve-span",
        file="proxy/gateway/spans.py",
        old="    _reserve_span(tracer, span, event.reserving, clock)\n\n\ndef add_denial(",
        new="\n\ndef add_denial(",
        tests=(
            f"{TRACING}::test_call_span_continues_the_client_trace_with_genai_attributes[memory]",
        ),
        removes="an admitted call's span has a reserve child",
    ),
    Mutation(
        name="denied-span-without-error-status",
        file="proxy/gateway/spans.py",
        old="    span.set_status(Status(StatusCode.ERROR, denial.message))\n",
        new="",
        tests=(f"{TRACING}::test_denied_call_span_has_an_error_status_and_the_deny",),
        removes="a denied call's span has an error status",
    ),
    Mutation.never(
        name="span-without-token-usage",
        file="proxy/gateway/spans.py",
        old="    usage = event.usage\n    if usage is not None:\n",
        tests=(
            f"{TRACING}::test_call_span_continues_the_client_trace_with_genai_attributes[memory]",
        ),
        removes="a call's span carries the tokens the provider reported",
    ),
    Mutation(
        name="no-token-usage-metric",
        file="proxy/gateway/tracing.py",
        old="        usage = event.usage\n",
        new="        usage = None\n",
        tests=(f"{TRACING}::test_genai_client_metrics_count_the_tokens_billed",),
        removes="the GenAI token usage histogram counts the tokens the provider reported",
    ),
    Mutation(
        name="opentelemetry-not-flushed-at-stop",
        file="proxy/gateway/tracing.py",
        old="    await within(app[TRACING].shutdown, STOP_SECONDS)\n",
        new="",
        tests=(
            f"{TRACING}::test_genai_client_metrics_count_the_tokens_billed",
            "tests/processes/test_otel_workers.py"
            "::test_each_worker_exports_its_calls_and_flushes_them_at_sigterm",
        ),
        removes="the proxy's stop exports the spans and metrics not yet sent",
    ),
    Mutation.never(
        name="failed-call-span-without-error-status",
        file="proxy/gateway/tracing.py",
        old="        if status >= 400 and genai.ERROR_TYPE not in call.attributes:\n",
        tests=(
            f"{TRACING}::test_a_call_refused_before_any_decision_is_an_error_span_with_its_status",
        ),
        removes="a call answered with an error status has an error span",
    ),
    Mutation.never(
        name="upstream-span-without-first-byte",
        file="proxy/gateway/spans.py",
        old="    if timings.first_byte is not None:\n",
        tests=(f"{TRACING}::test_a_stream_span_has_its_usage_and_the_upstream_first_byte",),
        removes="the upstream span marks when the provider's headers came",
    ),
    Mutation(
        name="settled-event-without-the-usage-reported",
        file="proxy/gateway/settle.py",
        old="        self.usage = outcome.usage\n",
        new="",
        tests=(
            f"{TRACING}::test_call_span_continues_the_client_trace_with_genai_attributes[memory]",
            f"{TRACING}::test_a_stream_span_has_its_usage_and_the_upstream_first_byte",
        ),
        removes="CallSettled carries the usage the provider reported",
    ),
    Mutation(
        name="workers-share-one-instance-id",
        file="proxy/gateway/tracing.py",
        old="Resource.create({SERVICE_INSTANCE_ID: str(uuid.uuid4())})",
        new='Resource.create({SERVICE_INSTANCE_ID: "cycles"})',
        tests=(
            "tests/processes/test_otel_workers.py"
            "::test_each_worker_exports_its_calls_and_flushes_them_at_sigterm",
        ),
        removes="each worker exports under a service.instance.id of its own",
    ),
    Mutation(
        name="image-without-opentelemetry",
        file="Dockerfile",
        old='install "$(echo /tmp/wheels/*.whl)[otel]"',
        new='install "$(echo /tmp/wheels/*.whl)"',
        tests=(
            "tests/deploy/test_deploy.py::test_image_build_installs_the_wheel_and_checks_the_policy",
        ),
        removes="the image installs the otel extra",
    ),
    Mutation.never(
        name="messages-calls-not-anthropic",
        file="proxy/gateway/genai.py",
        old='    if endpoint == "messages":\n',
        tests=(f"{TRACING}::test_a_messages_call_is_anthropic_chat",),
        removes="a Messages API call's gen_ai.provider.name is anthropic",
    ),
    Mutation(
        name="memory-sweep-walks-every-record",
        file="proxy/store/ledger/sweep_memory.py",
        old="if r.owner in dead] if dead else []\n",
        new="if r.owner in dead]\n",
        tests=(
            "tests/store/test_ledger_memory.py::test_a_sweep_with_no_dead_owner_walks_no_record",
        ),
        removes="memory://: a sweep pass with no dead owner walks none of a tenant's records",
    ),
    Mutation(
        name="report-limit-takes-unicode-digits",
        file="proxy/reports/read.py",
        old="    return int(raw) if _NUMBER.fullmatch(raw) else None\n",
        new="    return int(raw) if raw.isdigit() and len(raw) <= 4 else None\n",
        tests=(
            "tests/reports/test_report_inputs.py::test_limit_with_a_unicode_digit_is_a_400_not_a_500",
            "tests/reports/test_report_inputs.py::test_numbers_in_other_scripts_are_refused",
        ),
        removes="a report's numbers are ASCII digits",
    ),
    Mutation(
        name="redis-rollups-keep-every-header-value",
        file="proxy/store/ledger/lua/rollup.lua",
        old="      if counts[level] < VALUES then\n",
        new="      if true then\n",
        tests=(
            "tests/store/test_rollup_bounds.py::"
            "test_header_values_past_the_bound_are_summed_in_the_star_row[redis]",
        ),
        removes="Redis: a day keeps at most values_per_level rows per structural level",
    ),
    Mutation(
        name="memory-rollups-keep-every-header-value",
        file="proxy/store/ledger/rollups_memory.py",
        old='        if int(fields.get(f"#|{level}", "0")) < most:\n',
        new="        if True:\n",
        tests=(
            "tests/store/test_rollup_bounds.py::"
            "test_header_values_past_the_bound_are_summed_in_the_star_row[memory]",
        ),
        removes="memory://: a day keeps at most values_per_level rows per structural level",
    ),
    Mutation(
        name="redis-rollup-sums-do-not-saturate",
        file="proxy/store/ledger/lua/rollup.lua",
        old="  return math.max(-SAFE, math.min(SAFE, x))\n",
        new="  return x\n",
        tests=("tests/store/test_rollup_edges.py::test_a_days_sums_saturate_at_2_53[redis]",),
        removes="Redis: a day's sums saturate at 2^53 - 1",
    ),
    Mutation(
        name="memory-rollup-sums-do-not-saturate",
        file="proxy/store/ledger/rollups_memory.py",
        old="    return max(-SAFE, min(SAFE, x))\n",
        new="    return x\n",
        tests=("tests/store/test_rollup_edges.py::test_a_days_sums_saturate_at_2_53[memory]",),
        removes="memory://: a day's sums saturate at 2^53 - 1",
    ),
    Mutation(
        name="memory-idle-tenant-days-never-due",
        file="proxy/store/ledger/memory_state.py",
        old="        earliest = (self.resv_exp.earliest(), self.ledger_exp.earliest(), "
        "self.days.earliest())\n",
        new="        earliest = (self.resv_exp.earliest(), self.ledger_exp.earliest())\n",
        tests=(
            "tests/store/test_rollup_bounds.py::test_the_memory_sweeper_purges_an_idle_tenants_days",
        ),
        removes="memory://: the sweeper forgets an idle tenant's days past the retention",
    ),
    Mutation(
        name="redis-late-settle-sets-the-new-days-peak",
        file="proxy/store/ledger/lua/common.lua",
        old="  if ROLL.current(string.match(prefix, '[^|]*$')) then "
        "ROLL.value_peak(prefix, after) end\n",
        new="  ROLL.value_peak(prefix, after)\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_settle_after_its_period_ended_leaves_the_new_days_peak[redis]",
        ),
        removes="Redis: a day's value_peak only measures the day's own period",
    ),
    Mutation(
        name="memory-late-settle-sets-the-new-days-peak",
        file="proxy/store/ledger/rollups_memory.py",
        old="        if current:\n",
        new="        if True:\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_settle_after_its_period_ended_leaves_the_new_days_peak[memory]",
        ),
        removes="memory://: a day's value_peak only measures the day's own period",
    ),
    Mutation(
        name="redis-settle-limit-from-the-day-before",
        file="proxy/store/ledger/lua/rollup.lua",
        old="      if not origin or origin >= days then origin = days - 1 end\n",
        new="      origin = days - 1\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_settle_two_days_after_its_reserve_keeps_the_lines_limit[redis]",
        ),
        removes="Redis: a settled row's limit comes from its reservation's day",
    ),
    Mutation(
        name="memory-settle-limit-from-the-day-before",
        file="proxy/store/ledger/rollups_memory.py",
        old="                lender = self.days.get("
        "today - 1 if origin is None or origin >= today else origin)\n",
        new="                lender = self.days.get(today - 1)\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_settle_two_days_after_its_reserve_keeps_the_lines_limit[memory]",
        ),
        removes="memory://: a settled row's limit comes from its reservation's day",
    ),
    Mutation(
        name="spill-replay-is-a-plain-shadow-reserve",
        file="proxy/gateway/spill.py",
        old="        replay=True,\n",
        new="",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_not_counted_as_a_shadow_denial[memory]",
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_not_counted_as_a_shadow_denial[redis]",
        ),
        removes="a spill replay counts no shadow denial",
    ),
    Mutation(
        name="redis-replay-counts-shadow-denials",
        file="proxy/store/ledger/lua/reserve.lua",
        old="if shadow and not replay and not would_allow then roll_denial(gate, 'shadow') end\n",
        new="if shadow and not would_allow then roll_denial(gate, 'shadow') end\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_not_counted_as_a_shadow_denial[redis]",
        ),
        removes="Redis: a replay counts no shadow denial",
    ),
    Mutation(
        name="report-counts-days-before-the-first-rollup",
        file="proxy/reports/figures.py",
        old="    return [by_day[d] for d in window.dates() if d >= since]\n",
        new="    return [by_day[d] for d in window.dates()]\n",
        tests=(
            "tests/reports/test_report_figures.py::test_a_new_tenants_days_before_its_first_rollup_do_not_count",
        ),
        removes="a report counts a tenant's days from its first rollup on",
    ),
    Mutation(
        name="report-recommends-below-the-forecast",
        file="proxy/reports/figures.py",
        old="    if never and ahead is not None and ahead > rec.units:\n",
        new="    if False:\n",
        tests=(
            "tests/reports/test_report_figures.py::test_a_never_denied_line_is_not_recommended_below_its_forecast",
        ),
        removes="a never-denied line is not recommended below its forecast",
    ),
    Mutation(
        name="report-lifetime-line-has-no-spent",
        file="proxy/reports/read.py",
        old='        if value != EVERY and (period in periods or period == "none")\n',
        new="        if value != EVERY and period in periods\n",
        tests=(
            "tests/reports/test_report_edges.py::test_a_lifetime_line_reports_its_spent_and_forecast[memory]",
        ),
        removes="a lifetime line's report reads its spent",
    ),
    Mutation(
        name="report-csv-cells-may-be-formulas",
        file="proxy/reports/render.py",
        old="""    return f"'{text}" if column in TEXT_COLUMNS """
        """and text.startswith(_FORMULA) else text\n""",
        new="    return text\n",
        tests=("tests/reports/test_report_inputs.py::test_csv_cells_are_not_formulas",),
        removes="a report's CSV text cells are never formulas",
    ),
    Mutation(
        name="memory-replay-counts-shadow-denials",
        file="proxy/store/ledger/memory.py",
        old="        if request.shadow and not request.replay and not outcome.would_allow:\n",
        new="        if request.shadow and not outcome.would_allow:\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_not_counted_as_a_shadow_denial[memory]",
        ),
        removes="memory://: a replay counts no shadow denial",
    ),
    Mutation(
        name="redis-replay-audits-a-would-be-denial",
        file="proxy/store/ledger/lua/reserve.lua",
        old="if shadow and not replay then\n",
        new="if shadow then\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_no_would_be_denial_in_the_audit[redis]",
        ),
        removes="Redis: a replay's audit entry has no would-be denial",
    ),
    Mutation(
        name="memory-replay-audits-a-would-be-denial",
        file="proxy/store/ledger/memory.py",
        old="        if request.shadow and not request.replay:\n",
        new="        if request.shadow:\n",
        tests=(
            "tests/store/test_rollup_edges.py::test_a_spill_replay_is_no_would_be_denial_in_the_audit[memory]",
        ),
        removes="memory://: a replay's audit entry has no would-be denial",
    ),
    Mutation(
        name="history-values-per-level-ignored",
        file="proxy/policy/schema.py",
        old="        history_values_per_level=spec.history.values_per_level,\n",
        new="",
        tests=("tests/policy/test_policy.py::test_history_values_per_level_reach_the_stores",),
        removes="history.values_per_level reaches the stores",
    ),
    Mutation(
        name="report-sizes-a-line-on-days-of-history",
        file="proxy/reports/figures.py",
        old="    if history < MIN_HISTORY_DAYS:\n",
        new="    if False:\n",
        tests=(
            "tests/reports/test_report_figures.py::test_under_a_week_of_history_keeps_the_limit_in_force",
            "tests/processes/test_cli.py::test_demo_stops_the_runaway_tenant_and_spares_the_others",
        ),
        removes="under a week of history a line's limit is kept, not extrapolated",
    ),
    Mutation(
        name="otel-stop-unbounded",
        file="proxy/gateway/tracing.py",
        old="    await within(app[TRACING].shutdown, STOP_SECONDS)\n",
        new="    await asyncio.to_thread(app[TRACING].shutdown)\n",
        tests=(
            "tests/gateway/test_tracing_bounds.py::test_stopping_waits_for_a_stuck_collector_no_longer_than_the_bound[memory-trickling]",
        ),
        removes="stopping waits for a stuck OTLP collector at most STOP_SECONDS",
    ),
    Mutation(
        name="otel-client-sampled-flag-decides",
        file="proxy/gateway/tracing.py",
        old='        sampler = None if env.get(SAMPLER_ENV, "").strip() else ALWAYS_ON\n',
        new="        sampler = None\n",
        tests=(
            "tests/gateway/test_tracing_bounds.py::test_a_client_traceparent_not_sampled_still_traces_the_call_in_its_trace[memory]",
        ),
        removes="a client's unsampled traceparent does not hide its call from the operator",
    ),
    Mutation(
        name="log-iteration-in-one-write",
        file="proxy/gateway/logs.py",
        old="        for chunk in chunks(lines, self.terminator):\n",
        new="        for chunk in [self.terminator.join(lines) + self.terminator]:\n",
        tests=(
            "tests/gateway/test_log_lines.py::test_an_iterations_lines_go_out_in_writes_a_pipe_keeps_whole",
            "tests/gateway/test_log_lines.py::test_lines_of_workers_sharing_a_pipe_never_interleave",
        ),
        removes="an iteration's lines are written in chunks of at most PIPE_BUF bytes",
    ),
    Mutation(
        name="log-unencodable-line-drops-its-chunk",
        file="proxy/gateway/logs.py",
        old='                    self._put(chunk.encode(encoding, "replace").decode(encoding))\n',
        new="                    raise\n",
        tests=(
            "tests/gateway/test_log_lines.py::test_a_line_the_stream_cannot_encode_is_replaced_and_the_others_written",
        ),
        removes="an unencodable line is written with replacements, the others as they are",
    ),
    Mutation(
        name="tally-nan-in-first-bucket",
        file="proxy/gateway/tallies.py",
        old="        if amount == amount:  # not NaN\n            self.counts",
        new="        if True:\n            self.counts",
        tests=(
            "tests/gateway/test_tallies.py::test_a_nan_observation_is_in_no_bucket_as_prometheus_client_has_it",
        ),
        removes="a NaN observation is counted in no bucket",
    ),
    Mutation(
        name="tally-label-values-not-str",
        file="proxy/gateway/tallies.py",
        old="            texts = tuple(str(value) for value in values)\n",
        new="            texts = values\n",
        tests=("tests/gateway/test_tallies.py::test_label_values_are_exposed_as_str_makes_them",),
        removes="label values are exposed as str() makes them",
    ),
    Mutation(
        name="otel-export-timeout-sdk-default",
        file="proxy/gateway/tracing.py",
        old='    timeout = None if env.get(TIMEOUT_ENV, "").strip() else EXPORT_SECONDS\n',
        new="    timeout = None\n",
        tests=(
            "tests/gateway/test_tracing_bounds.py::test_an_export_to_a_hanging_collector_times_out_after_export_seconds[memory]",
        ),
        removes="each OTLP export times out after EXPORT_SECONDS unless the environment says",
    ),
    Mutation(
        name="the-events-source-names-the-process",
        file="proxy/gateway/usage_sender.py",
        old="        return self.runtime.policy.events.source or DEFAULT_SOURCE\n",
        new='        return self.runtime.policy.events.source or f"cycles-proxy/{self.owner}"\n',
        tests=(f"{SINKS}test_a_redelivery_by_another_process_keeps_the_events_source",),
        removes="a redelivered event keeps its CloudEvents source (same in every process)",
    ),
    Mutation(
        name="a-reloaded-sink-is-not-waited-for",
        file="proxy/gateway/usage_sender.py",
        old="        while waiting := [s for s in self.configure() if s not in took]:\n",
        new=(
            "        first = self.configure()\n"
            "        while waiting := [\n"
            "            s for s in first if s not in took and s in self.configure()\n"
            "        ]:\n"
        ),
        tests=(f"{SINKS}test_a_sink_fixed_by_a_reload_gets_the_batch_that_waited_for_it[redis]",),
        removes="a batch is acknowledged only once every sink of the policy in force took it",
    ),
    Mutation(
        name="a-redirect-is-a-delivery",
        file="proxy/gateway/alerts.py",
        old=", allow_redirects=False)\n",
        new=")\n",
        tests=(f"{SINKS}test_a_redirected_post_is_not_a_delivery[memory]",),
        removes="a sink's redirect is a failure, never a delivery",
    ),
    Mutation(
        name="the-redis-outbox-is-unbounded",
        file="proxy/store/ledger/lua/outbox.lua",
        old="  if redis.call('XLEN', OUTBOX) >= bound then\n",
        new="  if false then\n",
        tests=(f"{BACKLOG}test_a_sink_outage_never_makes_the_ledger_refuse_settles",),
        removes="a tenant's Redis outbox stops at events.max_pending: settles never fail on it",
    ),
    Mutation(
        name="the-outbox-key-is-not-declared",
        file="proxy/store/ledger/scripts.py",
        old="            layout.outbox_key(tenant),\n        ]",
        new="        ]",
        tests=("tests/store/test_outbox_keys.py",),
        removes="the settling scripts are given the outbox key in KEYS",
    ),
    Mutation(
        name="a-commit-after-a-release-reuses-the-release-event-id",
        file="proxy/store/ledger/lua/outbox.lua",
        old="  if state == 'RELEASED' then return id .. '.after-release' end\n",
        new="",
        tests=(f"{EVENT_IDS}test_a_commit_after_a_release_has_an_id_of_its_own[redis]",),
        removes="a commit after a release is an event of its own id (Redis)",
    ),
    Mutation(
        name="memory-commit-after-a-release-reuses-the-release-event-id",
        file="proxy/store/ledger/outbox.py",
        old='    if state == "RELEASED":\n',
        new="    if False:\n",
        tests=(f"{EVENT_IDS}test_a_commit_after_a_release_has_an_id_of_its_own[memory]",),
        removes="a commit after a release is an event of its own id (memory://)",
    ),
    Mutation(
        name="a-second-charge-of-a-missing-record-reuses-the-event-id",
        file="proxy/store/ledger/lua/outbox.lua",
        old="  if state == 'MISSING' then return id .. '.missing.' .. fmt(NOW) end\n",
        new="",
        tests=(
            f"{EVENT_IDS}test_a_commit_replayed_after_its_tombstone_expired_has_an_id_of_its_own",
        ),
        removes="a charge of a record the store no longer has is an event of its own id",
    ),
    Mutation(
        name="a-url-password-is-logged",
        file="proxy/gateway/logs.py",
        old=(
            '    (re.compile(r"(?i)\\b([a-z][a-z0-9+.-]*://[^:/@\\s\'\\"]*:)[^@\\s/\'\\"]+@"), '
            'r"\\1" + REDACTED + "@"),\n'
        ),
        new="",
        tests=(f"{BACKLOG}test_a_webhook_urls_password_is_not_logged",),
        removes="the password of any URL (a sink's) is redacted from every log line",
    ),
    Mutation(
        name="a-zero-cost-commit-is-a-release",
        file="proxy/gateway/usage_events.py",
        old="    if state is not None:\n",
        new="    if False:\n",
        tests=(f"{BACKLOG}test_a_zero_cost_commit_is_reported_committed[redis]",),
        removes="a commit that charged nothing is `committed` in its event",
    ),
    Mutation(
        name="an-empty-outbox-stream-is-left-behind",
        file="proxy/store/ledger/lua/outbox_ack.lua",
        old="if redis.call('XLEN', KEYS[9]) == 0 then redis.call('DEL', KEYS[9]) end\n",
        new="",
        tests=(f"{OUTBOX}test_an_acknowledged_outbox_leaves_no_key_behind",),
        removes="acknowledging deletes a tenant's outbox stream once it is empty",
    ),
    Mutation(
        name="a-sink-without-its-secret-loads",
        file="proxy/policy/sinks.py",
        old="    if not env.get(name):\n",
        new="    if False:\n",
        tests=(f"{OUTBOX}test_a_sink_that_cannot_work_is_refused_at_load",),
        removes="a sink whose secret's environment variable is unset is refused at load",
    ),
    Mutation(
        name="a-jsonl-sink-that-cannot-write-loads",
        file="proxy/policy/sinks.py",
        old="        if problem is not None:\n",
        new="        if False:\n",
        tests=(f"{OUTBOX}test_a_sink_that_cannot_work_is_refused_at_load",),
        removes="a jsonl sink whose directory does not exist is refused at load",
    ),
    Mutation(
        name="dropped-events-go-unreported",
        file="proxy/gateway/usage_sender.py",
        old="        dropping = backlog and (new > 0 or self._dropping)\n",
        new="        dropping = False\n",
        tests=(f"{USAGE}test_a_backed_up_outbox_shows_in_the_metric_and_alerts",),
        removes="the backlog alert says when events start being dropped",
    ),
    Mutation(
        name="dropped-events-not-counted",
        file="proxy/gateway/usage_sender.py",
        old="            self.metrics.events_dropped.inc(max(new, 0))\n",
        new="            pass\n",
        tests=(f"{USAGE}test_a_backed_up_outbox_shows_in_the_metric_and_alerts",),
        removes="cycles_events_dropped_total counts the events a full outbox dropped",
    ),
    Mutation(
        name="a-batch-no-sink-took-is-acknowledged",
        file="proxy/gateway/usage_sender.py",
        old="        return bool(self.configure())\n",
        new="        return True\n",
        tests=(f"{SINKS}test_a_reload_that_removes_every_sink_keeps_the_waiting_batch[redis]",),
        removes="a reload that removes every sink leaves the waiting batch unacknowledged",
    ),
    Mutation(
        name="policy-reload-fault-ends-the-watcher",
        file="proxy/policy/watcher.py",
        old=(
            "            except Exception:  # a fault in one round must not end every later"
            " reload\n"
        ),
        new="            except ZeroDivisionError:\n",
        tests=(
            "tests/policy/test_policy_events_path.py"
            "::test_a_round_that_fails_unexpectedly_does_not_end_the_reloads",
        ),
        removes="a reload round's unforeseen fault is logged and later rounds go on",
    ),
    Mutation(
        name="jsonl-sink-path-errors-raised",
        file="proxy/policy/sinks.py",
        old="    except OSError as exc:  # a name too long, a loop of links: the system's reason\n",
        new="    except ZeroDivisionError as exc:\n",
        tests=("tests/policy/test_policy_events_path.py",),
        removes="a jsonl path the system refuses is a policy error, not a stack trace",
    ),
    Mutation(
        name="jsonl-sink-directory-accepted",
        file="proxy/policy/sinks.py",
        old="        if path.is_dir():\n",
        new="        if False:\n",
        tests=("tests/policy/test_policy_events_path.py",),
        removes="a jsonl sink path naming a directory is refused at load",
    ),
    Mutation(
        name="mcp-session-memory-ignores-tenant",
        file="proxy/store/mcp_sessions.py",
        old="    return (tenant, server, session_digest(session))\n",
        new='    return ("", server, session_digest(session))\n',
        tests=(f"{MCP_SESSIONS}test_another_tenant_does_not_hold_a_session_it_did_not_bind",),
        removes="memory://: a tenant holds only the MCP sessions it bound",
    ),
    Mutation(
        name="mcp-session-key-ignores-tenant",
        file="proxy/store/redis/layout.py",
        old='    return f"{PREFIX}:{{t:{tenant}}}:mcp:{server}:{digest}"\n',
        new='    return f"{PREFIX}:{{mcp}}:mcp:{server}:{digest}"\n',
        tests=(f"{MCP_SESSIONS}test_another_tenant_does_not_hold_a_session_it_did_not_bind",),
        removes="Redis: a tenant holds only the MCP sessions it bound (keyed under its tag)",
    ),
    Mutation(
        name="audit-action-dropped-redis",
        file="proxy/store/ledger/lua/reserve.lua",
        old="  if action ~= '' then\n",
        new="  if false then\n",
        tests=(ACTION_AUDIT,),
        removes="Redis: a reserve's audit entry names what it was reserved for (`action`)",
    ),
    Mutation(
        name="audit-action-dropped-memory",
        file="proxy/store/ledger/memory.py",
        old="        if request.action is not None:\n",
        new="        if False:\n",
        tests=(ACTION_AUDIT,),
        removes="memory://: a reserve's audit entry names what it was reserved for (`action`)",
    ),
    Mutation(
        name="reservation-api-action-not-audited",
        file="proxy/actions/reserving.py",
        old="        action=ask.action,\n",
        new="",
        tests=(f"{ACTIONS}::test_the_audit_entry_of_a_reservation_names_its_action",),
        removes="the reservation API's audit entry names the action reserved",
    ),
    Mutation(
        name="mcp-session-memory-never-expires",
        file="proxy/store/mcp_sessions.py",
        old="        if expires <= self._clock():\n",
        new="        if False:\n",
        tests=(f"{MCP_SESSIONS}test_memory_expiry_follows_its_clock",),
        removes="memory://: an MCP session not held within its TTL expires",
    ),
    Mutation(
        name="mcp-session-holds-does-not-refresh",
        file="proxy/store/mcp_sessions.py",
        old="        return bool(await self._client.pexpire(key, check_ttl(ttl_ms)))\n",
        new="        return bool(await self._client.exists(key))\n",
        tests=(f"{MCP_SESSIONS}test_a_session_expires_unless_held_and_holding_refreshes_it",),
        removes="Redis: holding an MCP session refreshes its TTL",
    ),
    Mutation(
        name="mcp-session-memory-tenant-unbounded",
        file="proxy/store/mcp_sessions.py",
        old="        while len(own) >= self._tenant_max:\n",
        new="        while False:\n",
        tests=(
            f"{MCP_SESSIONS}test_memory_drops_a_tenants_oldest_beyond_its_bound_and_only_its_own",
        ),
        removes="memory://: one tenant's MCP sessions are bounded, its oldest dropped",
    ),
    Mutation(
        name="tool-glob-specificity-ignored",
        file="proxy/policy/tools.py",
        old="        if best is None or specificity(price.key) > specificity(best.key):\n",
        new="        if best is None:\n",
        tests=(
            "tests/policy/test_policy_mcp.py"
            "::test_a_tools_price_is_the_exact_key_else_the_most_specific_glob",
        ),
        removes="a tool's price is the matching glob with the most literal characters",
    ),
    Mutation(
        name="tool-glob-ties-go-to-the-last",
        file="proxy/policy/tools.py",
        old="        if best is None or specificity(price.key) > specificity(best.key):\n",
        new="        if best is None or specificity(price.key) >= specificity(best.key):\n",
        tests=(
            "tests/policy/test_policy_mcp.py"
            "::test_globs_as_specific_as_each_other_go_by_the_first_written",
        ),
        removes="globs as specific as each other price a tool by the first written",
    ),
    Mutation(
        name="tools-quota-allows-everything",
        file="proxy/policy/runtime.py",
        old="        return self.tools is None or any_matches(self.tools, server, tool)\n",
        new="        return True\n",
        tests=(
            "tests/policy/test_policy_mcp.py::test_quotas_tools_allow_only_what_their_globs_name",
        ),
        removes="quotas.tools allows only the tools its globs name",
    ),
    Mutation(
        name="hide-rule-becomes-llm-candidate",
        file="proxy/budget/call.py",
        old="        for rule in plan.call_rules\n",
        new="        for rule in plan.degrade\n",
        tests=(
            "tests/policy/test_policy_units.py::test_llm_calls_take_no_candidate_from_a_hide_rule",
        ),
        removes="a hide_tools degrade rule never becomes an LLM call's candidate",
    ),
    Mutation(
        name="user-reset-skips-operator-units-lua",
        file="proxy/store/ledger/lua/tenant_ledger.lua",
        old="  for i = 11, #ARGV do\n",
        new="  for i = 11, 13 do\n",
        tests=("tests/store/test_user_reset_units.py",),
        removes="a user reset on Redis zeroes the user's lines in the policy's operator units",
    ),
    Mutation(
        name="user-reset-skips-operator-units-memory",
        file="proxy/store/tenants/base.py",
        old="    return (*BUILTIN_UNITS, *sorted(set(units) - set(BUILTIN_UNITS)))\n",
        new="    return BUILTIN_UNITS\n",
        tests=("tests/store/test_user_reset_units.py",),
        removes="a user reset zeroes the user's lines in the policy's operator units",
    ),
    Mutation(
        name="admin-reset-forgets-policy-units",
        file="proxy/admin/api.py",
        old=(
            "            record.id, level=level, value=value, actor=ACTOR, reason=reason,"
            " units=units\n"
        ),
        new="            record.id, level=level, value=value, actor=ACTOR, reason=reason\n",
        tests=("tests/admin/test_admin_user_reset_units.py",),
        removes="the admin API's user reset passes the policy's units to the store",
    ),
    Mutation(
        name="usd-action-reserves-on-action-lines",
        file="proxy/actions/reserving.py",
        old="    if unit in CALL_UNITS:\n        lines = [line",
        new="    if False:\n        lines = [line",
        tests=(
            "tests/policy/test_policy_units.py"
            "::test_an_action_priced_in_usd_reserves_on_the_plans_usd_lines_with_overrides",
        ),
        removes="a USD-priced action reserves on the plan's USD call budgets",
    ),
    Mutation.never(
        name="mcp-session-of-another-tenant-relayed",
        file="proxy/mcp/sessions.py",
        old='    if not await hop.admission.store_op("session lookup", holding):\n',
        tests=("tests/mcp/test_transport.py::test_a_session_is_404_for_any_other_tenant",),
        removes="a session id the caller's tenant did not bind is 404 before the server",
    ),
    Mutation.never(
        name="mcp-hidden-tool-called",
        file="proxy/mcp/calls.py",
        old="    if why is not None:\n",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_a_tool_outside_the_plan_is_neither_listed_nor_callable",
        ),
        removes="a call to a tool the plan or a hide rule hides is refused",
    ),
    Mutation(
        name="mcp-hidden-tool-listed",
        file="proxy/mcp/listing.py",
        old='isinstance(t, dict) and why(str(t.get("name"))) is None]',
        new="isinstance(t, dict)]",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_a_tool_outside_the_plan_is_neither_listed_nor_callable",
        ),
        removes="tools/list shows only the tools the caller may call",
    ),
    Mutation.never(
        name="mcp-denied-tool-call-forwarded",
        file="proxy/mcp/calls.py",
        old="    if denial is not None:\n",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_exactly_ten_of_30_concurrent_emails_reach_the_server",
        ),
        removes="a tool call the ledger denies never reaches the server",
    ),
    Mutation.never(
        name="mcp-protocol-error-charged",
        file="proxy/mcp/outcome.py",
        old="    if ending in RELEASED:\n",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_a_protocol_error_releases_and_a_server_error_charges",
        ),
        removes="a JSON-RPC error (the tool did not run) releases the reservation",
    ),
    Mutation(
        name="mcp-charge-on-error-ignored",
        file="proxy/mcp/outcome.py",
        old='    return charge_on_error == "reserved"\n',
        new="    return True\n",
        tests=(
            "tests/mcp/test_tool_budgets.py::test_an_iserror_result_settles_by_charge_on_error",
        ),
        removes="charge_on_error: released releases an isError result",
    ),
    Mutation(
        name="mcp-timeout-released",
        file="proxy/mcp/outcome.py",
        old="    {Ending.PROTOCOL_ERROR, Ending.INPUT_REQUIRED, Ending.REFUSED, Ending.NOT_SENT}\n",
        new=(
            "    {Ending.PROTOCOL_ERROR, Ending.INPUT_REQUIRED, Ending.REFUSED, Ending.NOT_SENT,"
            " Ending.TIMEOUT}\n"
        ),
        tests=("tests/mcp/test_tool_budgets.py::test_a_timeout_charges_the_reservation",),
        removes="a tool call with no answer within the server's timeout is charged",
    ),
    Mutation(
        name="mcp-server-error-released",
        file="proxy/mcp/settling.py",
        old="    if status >= 500:\n        return Ending.FAILED\n",
        new="",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_a_protocol_error_releases_and_a_server_error_charges",
        ),
        removes="a 5xx answer to a tool call is charged by charge_on_error",
    ),
    Mutation.never(
        name="mcp-method-header-mismatch-relayed",
        file="proxy/mcp/jsonrpc.py",
        old="    if said is not None and said != message.method:\n",
        tests=(
            "tests/mcp/test_transport.py"
            "::test_refusals_are_jsonrpc_errors_before_the_server_sees_anything",
        ),
        removes="an Mcp-Method header that differs from the body's method is refused",
    ),
    Mutation.never(
        name="mcp-name-header-mismatch-relayed",
        file="proxy/mcp/jsonrpc.py",
        old="        if named != actual:\n",
        tests=(
            "tests/mcp/test_transport.py"
            "::test_refusals_are_jsonrpc_errors_before_the_server_sees_anything",
        ),
        removes="an Mcp-Name header that differs from the body's tool name is refused",
    ),
    Mutation.never(
        name="mcp-task-call-relayed",
        file="proxy/mcp/jsonrpc.py",
        old='    if "task" in message.params:\n',
        tests=("tests/mcp/test_messages.py::test_odd_tool_names_and_tasks_are_refused",),
        removes="a task-augmented tools/call (answered later) is refused",
    ),
    Mutation(
        name="mcp-client-headers-forwarded",
        file="proxy/mcp/upstream.py",
        old="with_credential(allowed(client.items(), REQUEST_HEADERS_UP), token, auth)",
        new="with_credential(CIMultiDict(client.items()), token, auth)",
        tests=(
            "tests/mcp/test_transport.py"
            "::test_the_servers_credential_goes_up_and_the_clients_stay_behind",
        ),
        removes="only allow-listed client headers reach an MCP server",
    ),
    Mutation(
        name="mcp-settle-not-spilled",
        file="proxy/gateway/admission.py",
        old=(
            "        return await write(self.ledger, reservation, charge, spill, self._metrics,"
            " event=event)\n"
        ),
        new="        return None\n",
        tests=("tests/mcp/test_tool_budgets.py::test_a_settle_while_the_store_is_down_is_spilled",),
        removes="a tool call's settle goes through the gateway's writer (spilled: store down)",
    ),
    Mutation(
        name="mcp-tool-calls-not-counted",
        file="proxy/gateway/metrics.py",
        old="        m.tool_calls.labels(tool.server, tool.price or UNPRICED, why).inc()\n",
        new="        pass\n",
        tests=(
            "tests/mcp/test_tool_budgets.py"
            "::test_exactly_ten_of_30_concurrent_emails_reach_the_server",
        ),
        removes="cycles_tool_calls_total counts tool calls by server, price key and outcome",
    ),
    Mutation(
        name="mcp-tool-call-not-a-step",
        file="proxy/mcp/pricing.py",
        old=(
            "    quotas = dataclasses.replace(reserve.quotas(tenant.plan, scope),"
            " tokens_per_minute=None)\n"
        ),
        new=(
            "    quotas = dataclasses.replace(reserve.quotas(tenant.plan, scope),"
            " tokens_per_minute=None, steps_per_run=None)\n"
        ),
        tests=("tests/mcp/test_tool_budgets.py::test_tool_calls_count_as_steps_of_their_run",),
        removes="a tool call counts as a step of its run (steps_per_run)",
    ),
    Mutation(
        name="fake-tool-rounds-ignored",
        file="proxy/testing/fake_shapes.py",
        old="    if not functions or done >= rounds:\n",
        new="    if not functions or done >= 1:\n",
        tests=(
            "tests/testing/test_fake_tool_rounds.py",
            "tests/mcp/test_agents_loop.py",
        ),
        removes="the fake calls the first function tool for `tool_rounds` rounds",
    ),
    Mutation(
        name="fake-call-arguments-empty",
        file="proxy/testing/fake_shapes.py",
        old='    return "x@example.com" if _emailish(name) else "x"\n',
        new='    return ""\n',
        tests=(
            "tests/testing/test_fake_tool_rounds.py",
            "tests/mcp/test_agents_loop.py",
        ),
        removes="the fake's call fills the tool's required string properties",
    ),
    Mutation(
        name="mcp-denial-without-result-type",
        file="proxy/mcp/jsonrpc.py",
        old='    result = {"content": content, "isError": True, "resultType": "complete"}\n',
        new='    result = {"content": content, "isError": True}\n',
        tests=(
            "tests/mcp/test_agents_loop.py"
            "::test_tool_calls_first_no_call_past_the_budget_reaches_the_server",
        ),
        removes="a refused tool call's result carries resultType, so 2026-07-28 clients "
        "(the Agents SDK) read its text rather than raising",
    ),
    Mutation(
        name="mcp-tool-call-not-observed",
        file="proxy/mcp/routes.py",
        old=(
            '        return await hop.admission.observed(hop.request, "mcp", _tool_call(hop,'
            " message, raw))\n"
        ),
        new="        return await _tool_call(hop, message, raw)\n",
        tests=(
            BOOKS + "test_each_tool_call_is_one_call_line_counted_like_every_call",
            BOOKS + "test_a_tool_call_is_in_flight_until_it_settles",
        ),
        removes="a tool call is a budgeted call: its cycles.calls line, cycles_requests, in flight",
    ),
    Mutation(
        name="mcp-tool-call-line-not-described",
        file="proxy/gateway/observe.py",
        old='        _describe_tool(record, event.tool)\n        record.decision = "ALLOW"\n',
        new='        record.decision = "ALLOW"\n',
        tests=(BOOKS + "test_each_tool_call_is_one_call_line_counted_like_every_call",),
        removes="a tool call's line names its server, tool, price key and amounts",
    ),
    Mutation(
        name="mcp-tool-label-unbounded",
        file="proxy/gateway/observe.py",
        old="    return tool.price or OTHER\n",
        new="    return tool.price or tool.action\n",
        tests=(BOOKS + "test_each_tool_call_is_one_call_line_counted_like_every_call",),
        removes="an unpriced tool call's model label is other, never the client's tool name",
    ),
    Mutation(
        name="mcp-tool-deny-not-told",
        file="proxy/mcp/calls.py",
        old="        events.emit(CallDenied(hop.request, tenant, denial, result, tool=asked))\n",
        new="",
        tests=(BOOKS + "test_tool_calls_alert_on_their_units_line",),
        removes="a denied tool call is a CallDenied (its line, its metrics, a first-deny alert)",
    ),
    Mutation(
        name="mcp-tool-commit-crossings-not-told",
        file="proxy/mcp/settling.py",
        old="CallSettled(hop.request, tenant, charge, result, tool=tool, ending=ending.value)",
        new="CallSettled(hop.request, tenant, charge, None, tool=tool, ending=ending.value)",
        tests=(BOOKS + "test_tool_calls_alert_on_their_units_line",),
        removes="a tool call's commit alerts on the thresholds it crossed (EMAILS 80%)",
    ),
    Mutation(
        name="dashboard-tool-calls-not-tallied",
        file="proxy/admin/dashboard/scan.py",
        old="        self.tools.add(entry)\n",
        new="",
        tests=(
            "tests/mcp/test_tool_dashboard.py"
            "::test_the_tenant_page_shows_tool_calls_by_server_and_tool",
        ),
        removes="the tenant page's Tool calls table counts each tool's reservations and denials",
    ),
    Mutation(
        name="dashboard-tool-charges-not-joined",
        file="proxy/admin/dashboard/scan.py",
        old="            got = charged(entry)\n",
        new="            got = {}\n",
        tests=(
            "tests/mcp/test_tool_dashboard.py"
            "::test_the_tenant_page_shows_tool_calls_by_server_and_tool",
        ),
        removes="the Tool calls table shows what each tool's commits charged",
    ),
    Mutation(
        name="report-counts-rounded-as-dollars",
        file="proxy/reports/figures.py",
        old="    step = CENT.get(unit, 1)\n",
        new='    step = CENT.get(unit, CENT["USD"])\n',
        tests=("tests/mcp/test_tool_reports.py::test_an_emails_line_is_reported_in_emails",),
        removes="a count line's recommended limit is a whole count, not rounded as dollars",
    ),
    Mutation(
        name="mcp-usage-event-without-tool",
        file="proxy/gateway/usage_events.py",
        old='            **({"tool": call["tool"]} if "tool" in call else {}),\n',
        new="",
        tests=("tests/mcp/test_tool_budgets.py::test_usage_events_name_the_server_and_tool",),
        removes="a tool call's usage event names its server and tool apart (`tool`)",
    ),
    Mutation(
        name="mcp-request-id-reused-in-flight",
        file="proxy/mcp/inflight.py",
        old="    if not claimed:\n",
        new="    if False:\n",
        tests=("tests/mcp/test_request_ids.py::test_a_reused_id_cannot_make_a_released_tool_free",),
        removes="a request whose id is in flight in its session is refused (no free released tool)",
    ),
    Mutation(
        name="mcp-request-id-never-freed",
        file="proxy/mcp/inflight.py",
        old=(
            "            await _free(hop, store.free(*where, request_id, token), ttl_ms)\n"
        ),
        new="            pass\n",
        tests=("tests/mcp/test_request_ids.py::test_a_reused_id_cannot_make_a_released_tool_free",),
        removes="a request's id is free again once it ended",
    ),
    Mutation(
        name="mcp-tool-call-notification-reserved",
        file="proxy/mcp/jsonrpc.py",
        old="    if message.id is None:\n",
        new="    if False:\n",
        tests=("tests/mcp/test_tool_notifications.py",),
        removes="a tools/call without an id (a notification) is refused, never reserved",
    ),
    Mutation(
        name="mcp-sse-answer-unbounded",
        file="proxy/mcp/upstream.py",
        old="            if read > limit:\n",
        new="            if False:\n",
        tests=("tests/mcp/test_sse_bounds.py",),
        removes="a tool call's SSE answer is bounded by limits.max_answer_bytes",
    ),
    Mutation(
        name="mcp-get-json-answer-broken-unhandled",
        file="proxy/mcp/forward.py",
        old=(
            "    except (upstream.Unreachable, upstream.Broken) as exc:\n"
            "        raise failed(str(exc)) from None\n"
        ),
        new="    except upstream.Unreachable as exc:\n        raise failed(str(exc)) from None\n",
        tests=(
            "tests/mcp/test_get_answers.py"
            "::test_a_json_answer_to_get_over_the_limit_is_a_jsonrpc_error_not_a_500",
        ),
        removes="a GET's JSON answer too big or cut off is a JSON-RPC 502, not a generic 500",
    ),
    Mutation(
        name="mcp-get-json-answer-without-deadline",
        file="proxy/mcp/forward.py",
        old=(
            "        async with asyncio.timeout(hop.seconds):\n"
            "            answer = await hop.send(None)\n"
        ),
        new=(
            "        async with asyncio.timeout(None):\n            answer = await hop.send(None)\n"
        ),
        tests=(
            "tests/mcp/test_get_answers.py"
            "::test_a_get_answer_whose_body_never_ends_is_cut_at_the_servers_timeout",
        ),
        removes="a GET's JSON answer is read within the server's timeout",
    ),
    Mutation(
        name="mcp-routing-header-twice-forwarded",
        file="proxy/mcp/routes.py",
        old="    jsonrpc.check_single(request.headers)\n",
        new="",
        tests=("tests/mcp/test_duplicate_headers.py",),
        removes="Mcp-Name, Mcp-Method, Mcp-Session-Id or MCP-Protocol-Version sent twice is 400",
    ),
    Mutation(
        name="mcp-request-id-claimed-for-tool-calls-only",
        file="proxy/mcp/inflight.py",
        old="    if session is None or not message.is_request or message.id is None:\n",
        new=(
            "    if session is None or not message.is_request or message.id is None"
            ' or message.method != "tools/call":\n'
        ),
        tests=(f"{REQUEST_IDS}test_an_id_in_flight_on_one_replica_is_refused_on_another",),
        removes="any request (a ping too) reusing an id in flight in its session is refused",
    ),
    Mutation(
        name="mcp-claim-redis-not-exclusive",
        file="proxy/store/mcp_sessions.py",
        old=(
            "        return bool(await self._client.set(key, token, nx=True, "
            "px=check_ttl(ttl_ms)))\n"
        ),
        new="        return bool(await self._client.set(key, token, px=check_ttl(ttl_ms)))\n",
        tests=(f"{MCP_SESSIONS}test_a_request_id_is_claimed_by_one_caller_until_freed",),
        removes="Redis: a request id is claimed by one caller at a time (SET NX)",
    ),
    Mutation(
        name="mcp-claim-pipeline-not-exclusive",
        file="proxy/store/mcp_sessions.py",
        old="            pipe.set(claimed, token, nx=True, px=check_ttl(claim_ms))\n",
        new="            pipe.set(claimed, token, px=check_ttl(claim_ms))\n",
        tests=(f"{MCP_SESSIONS}test_a_claim_holds_across_stores_on_one_redis",),
        removes="Redis: the session check's claim is exclusive across stores on one Redis",
    ),
    Mutation(
        name="mcp-claim-left-in-a-session-not-held",
        file="proxy/store/mcp_sessions.py",
        old="        if not held and got:\n",
        new="        if False:\n",
        tests=(f"{MCP_SESSIONS}test_holds_claiming_claims_only_in_a_session_held",),
        removes="Redis: nothing stays claimed in a session the tenant does not hold",
    ),
    Mutation(
        name="mcp-claim-memory-not-exclusive",
        file="proxy/store/mcp_sessions.py",
        old="        if held is not None and held[0] > now:\n",
        new="        if False:\n",
        tests=(f"{MCP_SESSIONS}test_a_request_id_is_claimed_by_one_caller_until_freed",),
        removes="memory://: a request id is claimed by one caller at a time",
    ),
    Mutation(
        name="mcp-claim-memory-never-expires",
        file="proxy/store/mcp_sessions.py",
        old="        if held is not None and held[0] > now:\n",
        new="        if held is not None:\n",
        tests=(f"{MCP_SESSIONS}test_a_claim_expires_by_itself",),
        removes="memory://: a claim expires by itself",
    ),
    Mutation(
        name="mcp-claim-redis-never-expires",
        file="proxy/store/mcp_sessions.py",
        old="            pipe.set(claimed, token, nx=True, px=check_ttl(claim_ms))\n",
        new="            pipe.set(claimed, token, nx=True)\n",
        tests=(f"{MCP_SESSIONS}test_a_claim_is_one_key_under_the_tenants_hash_tag_with_its_ttl",),
        removes="Redis: a claim has a TTL, so a crashed proxy's claim expires by itself",
    ),
    Mutation(
        name="mcp-claim-key-ignores-session",
        file="proxy/store/redis/layout.py",
        old='    return f"{PREFIX}:{{t:{tenant}}}:mcpid:{server}:{session}:{request}"\n',
        new='    return f"{PREFIX}:{{t:{tenant}}}:mcpid:{server}::{request}"\n',
        tests=(f"{MCP_SESSIONS}test_a_request_id_is_claimed_by_one_caller_until_freed",),
        removes="Redis: a request id is claimed in its own session only",
    ),
    Mutation(
        name="mcp-request-id-free-failure-fails-the-answer",
        file="proxy/mcp/inflight.py",
        old="    except ClientError:\n",
        new="    except ValueError:\n",
        tests=(f"{REQUEST_IDS}test_an_id_not_freed_for_the_store_is_left_to_expire",),
        removes="a store failure at the free leaves the claim to expire; the answer stands",
    ),
    Mutation(
        name="mcp-tool-in-a-unit-budgeted-nowhere-runs-free",
        file="proxy/mcp/pricing.py",
        old="    if not levels:\n        section = ",
        new="    if not levels:\n        return None\n        section = ",
        tests=(
            "tests/mcp/test_unbudgeted_unit.py"
            "::test_a_tool_priced_in_a_unit_the_plan_does_not_budget_is_not_free",
        ),
        removes="a tool priced in a unit its plan budgets on no level is refused as unbudgeted",
    ),
    Mutation(
        name="action-budgets-list-keeps-only-the-first",
        file="proxy/policy/budgets.py",
        old="enumerate(specs if isinstance(specs, list) else [specs])",
        new="enumerate(specs[:1] if isinstance(specs, list) else [specs])",
        tests=(
            "tests/policy/test_action_budget_lists.py::test_a_level_holds_one_budget_per_action_unit",
            "tests/mcp/test_unbudgeted_unit.py"
            "::test_a_level_budgets_two_action_units_and_each_tool_reserves_on_its_own",
        ),
        removes="a level holds several action budgets, one per unit (the list form)",
    ),
    Mutation(
        name="action-budgets-one-unit-twice-on-a-level",
        file="proxy/policy/budgets.py",
        old="            if spec.unit in units:\n",
        new="            if spec.unit in units and False:\n",
        tests=(
            "tests/policy/test_action_budget_lists.py"
            "::test_two_budgets_of_one_unit_on_one_level_are_refused",
        ),
        removes="two action budgets of one unit on one level are a policy error",
    ),
    Mutation(
        name="check-silent-on-a-tool-unit-no-plan-budgets",
        file="proxy/policy/advice.py",
        old=" + _unbudgeted_tools(policy)\n",
        new="\n",
        tests=(
            "tests/policy/test_action_budget_lists.py"
            "::test_a_plan_without_a_tools_unit_is_warned_about_and_check_says_refused",
        ),
        removes="check warns of a plan that budgets a tool price's unit on no level",
    ),
    Mutation(
        name="lua-denials-of-two-tools-one-entry",
        file="proxy/store/ledger/lua/audit.lua",
        old="  if group ~= '' then key = key .. '|' .. group end\n",
        new="",
        tests=(
            "tests/admin/test_tool_denials_by_tool.py"
            "::test_each_tools_denials_are_booked_under_that_tool[redis]",
        ),
        removes="redis: identical denials aggregate per action, so each tool's are its own",
    ),
    Mutation(
        name="memory-denials-of-two-tools-one-entry",
        file="proxy/store/ledger/memory_state.py",
        old='            key += f"|{group}"\n',
        new="            pass\n",
        tests=(
            "tests/admin/test_tool_denials_by_tool.py"
            "::test_each_tools_denials_are_booked_under_that_tool[memory]",
        ),
        removes="memory: identical denials aggregate per action, so each tool's are its own",
    ),
    Mutation(
        name="dashboard-tool-table-ignores-expiry-charges",
        file="proxy/admin/dashboard/scan.py",
        old='        if entry.kind in ("commit", "expire") and "reservation" in fields:\n',
        new='        if entry.kind == "commit" and "reservation" in fields:\n',
        tests=("tests/admin/test_tool_expiry_charge.py",),
        removes="the Tool calls table counts what expiries charged a tool's reservations",
    ),
    Mutation(
        name="dashboard-tool-charges-overwrite",
        file="proxy/admin/dashboard/scan.py",
        old='                _add(self._charges.setdefault(fields["reservation"], {}), got)\n',
        new='                self._charges[fields["reservation"]] = dict(got)\n',
        tests=("tests/admin/test_tool_expiry_charge.py::test_charges_of_one_reservation_add_up",),
        removes="a reservation's commit and expiry charges add up on its tool's row",
    ),
    Mutation(
        name="dashboard-tool-rows-by-recency",
        file="proxy/admin/dashboard/scan.py",
        old=(
            "        ranked = sorted(self.tallies.items(), "
            "key=lambda item: (-item[1].calls, item[0]))\n"
        ),
        new="        ranked = list(self.tallies.items())\n",
        tests=(
            "tests/admin/test_tool_denials_by_tool.py::test_the_most_called_tools_keep_their_rows",
        ),
        removes="the Tool calls table keeps the most called tools, not the most recent names",
    ),
    Mutation(
        name="mcp-client-response-claims-an-id",
        file="proxy/mcp/inflight.py",
        old="    if session is None or not message.is_request or message.id is None:\n",
        new="    if session is None or message.id is None:\n",
        tests=("tests/mcp/test_tool_input.py::test_the_clients_answer_may_carry_the_calls_own_id",),
        removes="a client's answer to the server's request (no method) claims no id: its id is "
        "the server's, and may be that of the call in flight",
    ),
    Mutation(
        name="mcp-input-required-charged",
        file="proxy/mcp/outcome.py",
        old="    {Ending.PROTOCOL_ERROR, Ending.INPUT_REQUIRED, Ending.REFUSED, Ending.NOT_SENT}\n",
        new="    {Ending.PROTOCOL_ERROR, Ending.REFUSED, Ending.NOT_SENT}\n",
        tests=(
            "tests/mcp/test_tool_input.py"
            "::test_modern_input_required_is_released_and_the_retry_committed",
        ),
        removes="an input_required round is released: the retry that completes is charged once",
    ),
    Mutation(
        name="ceil-times-rounds-down",
        file="proxy/metering/pricing.py",
        old="    return -(-count * factor.numerator // factor.denominator)\n",
        new="    return count * factor.numerator // factor.denominator\n",
        tests=("tests/metering/test_pricing.py",),
        removes="a prompt scaled by a tokenizer factor is rounded up, never down",
    ),
    Mutation(
        name="packed-head-count-wrong",
        file="proxy/store/redis/wire.py",
        old="    return b\"*%d\\r\\n%b%b\" % (count + len(args), packed,",
        new="    return b\"*%d\\r\\n%b%b\" % (count, packed,",
        tests=("tests/store/test_wire.py",),
        removes="a command packed after its head counts every argument",
    ),
    Mutation(
        name="mcp-unbudgeted-on-cached-settings-only",
        file="proxy/mcp/calls.py",
        old="        if unbudgeted is not None:\n",
        new="        if unbudgeted is not None and config is tenant:\n",
        tests=("tests/mcp/test_unbudgeted_stale.py",),
        removes="unbudgeted is decided on the settings each attempt reserves with: a plan "
        "change to one without the unit refuses the tool, never runs it unreserved",
    ),
    Mutation(
        name="mcp-claim-freed-after-timeout",
        file="proxy/mcp/inflight.py",
        old="        if ended_well and not hop.unanswered.server_may_run:\n",
        new="        if ended_well:\n",
        tests=(
            "tests/mcp/test_request_ids.py"
            "::test_an_id_whose_call_timed_out_stays_claimed_while_the_server_may_run_it",
        ),
        removes="an id the server may still run (the proxy timed out) stays claimed to its TTL",
    ),
    Mutation(
        name="mcp-claim-freed-by-anyone",
        file="proxy/store/mcp_sessions.py",
        old="        if held is not None and held[1] == token:\n",
        new="        if held is not None:\n",
        tests=(
            "tests/store/test_mcp_sessions.py"
            "::test_memory_a_late_free_leaves_the_next_holders_claim",
        ),
        removes="a claim is freed only by the token that made it",
    ),
    Mutation(
        name="mcp-claim-lua-free-unchecked",
        file="proxy/store/mcp_sessions.py",
        old="if redis.call('GET', KEYS[1]) == ARGV[1] then",
        new="if redis.call('GET', KEYS[1]) then",
        tests=(
            "tests/store/test_mcp_sessions.py"
            "::test_a_claim_is_freed_only_by_the_token_that_made_it",
        ),
        removes="Redis frees a claim only while it holds the freeing request's token",
    ),
    Mutation(
        name="mcp-denials-grouped-by-tool-name",
        file="proxy/mcp/pricing.py",
        old='        group=price.key if price is not None else tool_key(server, "?"),\n',
        new="        group=None,\n",
        tests=("tests/mcp/test_denial_grouping.py",),
        removes="tool-call denials fold by price key: made-up names cannot multiply entries",
    ),
    Mutation(
        name="mcp-claim-freed-when-stream-ends-unanswered",
        file="proxy/mcp/forward.py",
        old="    if found is None and status < 400:\n",
        new="    if False:\n",
        tests=(
            "tests/mcp/test_request_id_claims_kept.py"
            "::test_an_id_whose_stream_closed_before_the_answer_stays_claimed",
        ),
        removes="an id whose stream ended without its answer stays claimed (the server may run it)",
    ),
    Mutation(
        name="mcp-expired-claims-never-dropped",
        file="proxy/store/mcp_sessions.py",
        old="        self._prune(now)\n",
        new="",
        tests=(
            "tests/store/test_mcp_claims_bounded.py::test_expired_kept_claims_do_not_pile_up",
            "tests/store/test_mcp_claims_bounded.py"
            "::test_beyond_the_bound_a_new_claim_is_refused_and_no_live_one_dropped",
        ),
        removes="memory://: expired MCP claims are dropped and the claims table is bounded",
    ),
    Mutation(
        name="mcp-oversized-json-answer-keeps-claim",
        file="proxy/mcp/upstream.py",
        old="                raise TooLarge(f",
        new="                raise Broken(f",
        tests=(
            "tests/mcp/test_request_id_claims_kept.py"
            "::test_an_answered_but_oversized_json_answer_frees_its_id",
        ),
        removes="an answered but oversized JSON answer frees its id (the server is done with it)",
    ),
    Mutation(
        name="mcp-claims-unbounded",
        file="proxy/store/mcp_sessions.py",
        old="        if len(self._claims) >= self._claims_max:\n",
        new="        if False:\n",
        tests=(
            "tests/store/test_mcp_claims_bounded.py"
            "::test_beyond_the_bound_a_new_claim_is_refused_and_no_live_one_dropped",
        ),
        removes="memory://: beyond MAX_CLAIMS live claims a new one is refused",
    ),
    Mutation(
        name="mcp-live-claims-dropped-when-full",
        file="proxy/store/mcp_sessions.py",
        old="        while heap and heap[0][0] <= now:\n",
        new="        while heap and (heap[0][0] <= now or len(claims) >= self._claims_max):\n",
        tests=(
            "tests/store/test_mcp_claims_bounded.py"
            "::test_one_tenant_cannot_push_out_another_tenants_live_claim",
        ),
        removes="memory://: a full claims table never drops another tenant's live claim",
    ),
    Mutation(
        name="mcp-claims-full-unanswered",
        file="proxy/mcp/inflight.py",
        old="    except ClaimsFull:\n",
        new="    except ZeroDivisionError:\n",
        tests=("tests/mcp/test_request_ids.py::test_a_full_claims_table_is_503_before_the_server",),
        removes="a full memory:// claims table is a JSON-RPC 503 before the server, not a 500",
    ),
)


def stale(mutation: Mutation, root: Path = ROOT) -> str | None:
    """Why `mutation` cannot be applied to the tree at `root`, or None if it can."""
    path = root / mutation.file
    if not path.is_file():
        return f"{mutation.file} does not exist"
    found = path.read_text().count(mutation.old)
    if found != 1:
        return f"its text occurs {found} times in {mutation.file} (must be exactly once)"
    for test in mutation.tests:
        module, _, name = test.partition("::")
        if not (root / module).exists():
            return f"{module} does not exist"
        if name and f"def {name.split('[')[0]}(" not in (root / module).read_text():
            return f"{module} has no test {name}"
    return None


def _copy_tree(destination: Path) -> None:
    """The files git knows (tracked, or new and not ignored), as they are on disk now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _pytest(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    # test_mutations.py checks the tree is unmutated: in a mutated copy it fails by design.
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    args += ["--ignore", "tests/test_mutations.py", *tests]
    try:
        done = subprocess.run(
            args, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout + done.stderr


def _first_failure(output: str) -> str:
    for text in output.splitlines():
        if text.startswith(("FAILED tests/", "ERROR tests/")):
            return text.split(" - ")[0]
    return output.strip().splitlines()[-1] if output.strip() else ""


@dataclass(frozen=True)
class Result:
    mutation: Mutation
    verdict: str
    """caught | SURVIVED | stale | broken-baseline | error"""
    detail: str
    seconds: float


def check(mutation: Mutation, baseline: bool, timeout: float) -> Result:
    started = time.monotonic()
    problem = stale(mutation)
    if problem is not None:
        return Result(mutation, "stale", problem, 0.0)
    with tempfile.TemporaryDirectory(prefix="cycles-mutant-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        if baseline:
            code, output = _pytest(tree, mutation.tests, timeout)
            if code != 0:
                detail = _first_failure(output)
                return Result(mutation, "broken-baseline", detail, time.monotonic() - started)
        path = tree / mutation.file
        path.write_text(path.read_text().replace(mutation.old, mutation.new))
        code, output = _pytest(tree, mutation.tests, timeout)
    elapsed = time.monotonic() - started
    if code == 0:
        return Result(mutation, "SURVIVED", "every listed test passed", elapsed)
    if code in (1, -1):
        return Result(mutation, "caught", _first_failure(output), elapsed)
    # 2: interrupted or a collection error; 4: usage error; 5: no tests collected.
    return Result(mutation, "error", f"pytest exit {code}: {_first_failure(output)}", elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to check (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--baseline", action="store_true", help="run each mutation's tests unmutated first"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        parser.error(f"no such mutation: {', '.join(unknown)} (see --list)")
    chosen = [known[name] for name in args.names] if args.names else list(MUTATIONS)
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.removes or m.name}")
        return 0
    results = []
    for m in chosen:
        result = check(m, args.baseline, args.timeout)
        results.append(result)
        print(f"{result.verdict:16} {m.name:45} {result.seconds:6.1f} s  {result.detail}")
        sys.stdout.flush()
    bad = [r for r in results if r.verdict != "caught"]
    print(f"\n{len(results)} mutations: {len(results) - len(bad)} caught, {len(bad)} not")
    for r in bad:
        print(f"  {r.verdict}: {r.mutation.name} ({r.detail})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
