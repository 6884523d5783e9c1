/*
 * Tests for admin: the Prometheus and JSON encoders (label and HELP
 * escaping, JSON strings, number formatting), a fixed report rendered to the
 * exact Prometheus text and to /status JSON, and who may use the port.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "wanmux/acl.h"
#include "wanmux/admin.h"

/* The buffer's text, NUL-terminated, to free. */
static char *text_of(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);
	assert_non_null(s);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	return s;
}

static void expect_label(const char *in, const char *want)
{
	struct evbuffer *b = evbuffer_new();
	admin_prom_label_value(b, in);
	char *got = text_of(b);
	assert_string_equal(got, want);
	free(got);
	evbuffer_free(b);
}

static void test_admin_label_value_escaping(void **state)
{
	expect_label("plain", "plain");
	expect_label("", "");
	expect_label("a\\b", "a\\\\b");
	expect_label("say \"hi\"", "say \\\"hi\\\"");
	expect_label("two\nlines", "two\\nlines");
	expect_label("[::1]:80 {x=y}", "[::1]:80 {x=y}");
	expect_label("caf\xc3\xa9", "caf\xc3\xa9"); /* UTF-8 as is */
}

static void test_admin_help_escaping(void **state)
{
	struct evbuffer *b = evbuffer_new();
	admin_prom_help(b, "a \"quoted\" back\\slash\nnext");
	char *got = text_of(b);
	/* HELP escapes backslash and newline only. */
	assert_string_equal(got, "a \"quoted\" back\\\\slash\\nnext");
	free(got);
	evbuffer_free(b);
}

static void expect_json(const char *in, const char *want)
{
	struct evbuffer *b = evbuffer_new();
	admin_json_string(b, in);
	char *got = text_of(b);
	assert_string_equal(got, want);
	free(got);
	evbuffer_free(b);
}

static void test_admin_json_string_escaping(void **state)
{
	expect_json("", "\"\"");
	expect_json("abc", "\"abc\"");
	expect_json("q\"b\\", "\"q\\\"b\\\\\"");
	expect_json("\n\r\t", "\"\\n\\r\\t\"");
	expect_json("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
	/* Angle brackets are escaped so the text is safe inside HTML too. */
	expect_json("<script>", "\"\\u003cscript\\u003e\"");
	expect_json("caf\xc3\xa9", "\"caf\xc3\xa9\"");
	expect_json("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");
	/* Not UTF-8 (a peer's target name): replaced, so /status stays JSON. */
	expect_json("a\xff\xc3", "\"a\\ufffd\\ufffd\"");
	expect_json("\xc0\xaf", "\"\\ufffd\\ufffd\"");		  /* overlong */
	expect_json("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
}

static void test_admin_number_formatting(void **state)
{
	static const struct {
		double v;
		const char *want;
	} vectors[] = {
	    {0, "0"},
	    {42, "42"},
	    {-7, "-7"},
	    {268435456, "268435456"},
	    {18446744073709.0, "18446744073709"},
	    {9007199254740991.0, "9007199254740991"},
	    {9007199254740992.0, "9.0072e+15"},
	    {0.5, "0.5"},
	    {0.624408123, "0.624408"},
	    {1.2e-05, "1.2e-05"},
	    {NAN, "NaN"},
	    {INFINITY, "+Inf"},
	    {-INFINITY, "-Inf"},
	};
	char buf[40];
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		assert_string_equal(admin_format_number(vectors[i].v, buf, sizeof(buf)),
				    vectors[i].want);
}

/* A report with everything fixed: two metric families added interleaved,
 * one tunnel that is up, one still in its handshake, and a limit. */
static struct admin_report *fixed_report(void)
{
	struct admin_report *rep = admin_report_new(ADMIN_CLIENT, "wanmux-client");
	assert_non_null(rep);
	admin_metric(rep, ADMIN_COUNTER, "refusals_total", "Refusals by reason.", 3, "reason",
		     "source", NULL, NULL);
	admin_metric(rep, ADMIN_GAUGE, "tunnels_configured", "Tunnels kept open.", 2, NULL, NULL,
		     NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "refusals_total", "ignored: the first help wins", 1,
		     "reason", "odd \"one\"", NULL, NULL);
	struct admin_tunnel t;
	memset(&t, 0, sizeof(t));
	snprintf(t.label, sizeof(t.label), "0");
	snprintf(t.peer, sizeof(t.peer), "198.18.0.1:7700");
	t.info.state = "up";
	t.info.age_ms = 61500;
	t.info.tcp_rtt_us = 25000;
	t.info.srtt_us = 26000;
	t.info.cwnd = 10;
	t.info.delivery_rate = 1250000;
	t.info.retransmits = 4;
	t.raw_sent = 1000;
	t.payload_sent = 400;
	t.wire_sent = 450;
	t.raw_received = 2000;
	t.payload_received = 2000;
	t.wire_received = 2100;
	t.streams = 1;
	admin_tunnel_row(rep, &t);
	memset(&t, 0, sizeof(t));
	snprintf(t.label, sizeof(t.label), "1");
	t.info.state = "handshake";
	admin_tunnel_row(rep, &t);
	admin_limit(rep, "connections", "--max-connections", 5, 4096);
	return rep;
}

static const char fixed_metrics[] =
    "# HELP wanmux_refusals_total Refusals by reason.\n"
    "# TYPE wanmux_refusals_total counter\n"
    "wanmux_refusals_total{reason=\"source\"} 3\n"
    "wanmux_refusals_total{reason=\"odd \\\"one\\\"\"} 1\n"
    "# HELP wanmux_tunnels_configured Tunnels kept open.\n"
    "# TYPE wanmux_tunnels_configured gauge\n"
    "wanmux_tunnels_configured 2\n"
    "# HELP wanmux_tunnels Tunnels by state (connecting includes the handshake).\n"
    "# TYPE wanmux_tunnels gauge\n"
    "wanmux_tunnels{state=\"up\"} 1\n"
    "wanmux_tunnels{state=\"connecting\"} 1\n"
    "wanmux_tunnels{state=\"closing\"} 0\n"
    "# HELP wanmux_tunnel_rtt_seconds Smoothed RTT of the tunnel's TCP connection "
    "(TCP_INFO).\n"
    "# TYPE wanmux_tunnel_rtt_seconds gauge\n"
    "wanmux_tunnel_rtt_seconds{tunnel=\"0\"} 0.025\n"
    "# HELP wanmux_tunnel_ping_rtt_seconds Smoothed RTT measured with PING/PONG through "
    "the tunnel.\n"
    "# TYPE wanmux_tunnel_ping_rtt_seconds gauge\n"
    "wanmux_tunnel_ping_rtt_seconds{tunnel=\"0\"} 0.026\n"
    "# HELP wanmux_tunnel_cwnd_segments Congestion window of the tunnel's TCP connection.\n"
    "# TYPE wanmux_tunnel_cwnd_segments gauge\n"
    "wanmux_tunnel_cwnd_segments{tunnel=\"0\"} 10\n"
    "# HELP wanmux_tunnel_delivery_rate_bytes_per_second The kernel's delivery rate "
    "estimate for the tunnel.\n"
    "# TYPE wanmux_tunnel_delivery_rate_bytes_per_second gauge\n"
    "wanmux_tunnel_delivery_rate_bytes_per_second{tunnel=\"0\"} 1250000\n"
    "# HELP wanmux_tunnel_retransmits_total TCP segments the tunnel retransmitted.\n"
    "# TYPE wanmux_tunnel_retransmits_total counter\n"
    "wanmux_tunnel_retransmits_total{tunnel=\"0\"} 4\n"
    "# HELP wanmux_tunnel_wire_bytes_total Record bytes on the tunnel's wire, by "
    "direction.\n"
    "# TYPE wanmux_tunnel_wire_bytes_total counter\n"
    "wanmux_tunnel_wire_bytes_total{tunnel=\"0\",direction=\"up\"} 450\n"
    "wanmux_tunnel_wire_bytes_total{tunnel=\"0\",direction=\"down\"} 2100\n"
    "# HELP wanmux_tunnel_streams Streams open in the tunnel's session, shown on its first "
    "tunnel.\n"
    "# TYPE wanmux_tunnel_streams gauge\n"
    "wanmux_tunnel_streams{tunnel=\"0\"} 1\n"
    "# HELP wanmux_tunnel_placed_data_bytes_total DATA payload bytes (before compression) the "
    "session placed on this tunnel.\n"
    "# TYPE wanmux_tunnel_placed_data_bytes_total counter\n"
    "wanmux_tunnel_placed_data_bytes_total{tunnel=\"0\"} 0\n"
    "# HELP wanmux_bytes_total Bytes by direction (up: client to server) and layer: app "
    "(stream data), payload (after compression), wire (records with headers and tags).\n"
    "# TYPE wanmux_bytes_total counter\n"
    "wanmux_bytes_total{direction=\"up\",layer=\"app\"} 1000\n"
    "wanmux_bytes_total{direction=\"up\",layer=\"payload\"} 400\n"
    "wanmux_bytes_total{direction=\"up\",layer=\"wire\"} 450\n"
    "wanmux_bytes_total{direction=\"down\",layer=\"app\"} 2000\n"
    "wanmux_bytes_total{direction=\"down\",layer=\"payload\"} 2000\n"
    "wanmux_bytes_total{direction=\"down\",layer=\"wire\"} 2100\n"
    "# HELP wanmux_compression_ratio Compressed DATA payload over application bytes since "
    "start (1: nothing saved).\n"
    "# TYPE wanmux_compression_ratio gauge\n"
    "wanmux_compression_ratio{direction=\"up\"} 0.4\n"
    "wanmux_compression_ratio{direction=\"down\"} 1\n"
    "# HELP wanmux_limit_used Current use of a limit.\n"
    "# TYPE wanmux_limit_used gauge\n"
    "wanmux_limit_used{limit=\"max_connections\"} 5\n"
    "# HELP wanmux_limit_max The configured limit.\n"
    "# TYPE wanmux_limit_max gauge\n"
    "wanmux_limit_max{limit=\"max_connections\"} 4096\n";

static void test_admin_fixed_metric_set_rendering(void **state)
{
	struct admin_report *rep = fixed_report();
	struct evbuffer *b = evbuffer_new();
	admin_render_metrics(rep, b);
	char *got = text_of(b);
	assert_string_equal(got, fixed_metrics);
	/* Rendering leaves the report as it was: twice gives the same text. */
	evbuffer_drain(b, evbuffer_get_length(b));
	admin_render_metrics(rep, b);
	char *again = text_of(b);
	assert_string_equal(again, fixed_metrics);
	free(got);
	free(again);
	evbuffer_free(b);
	admin_report_free(rep);
}

static void test_admin_server_role_swaps_directions(void **state)
{
	struct admin_report *rep = admin_report_new(ADMIN_SERVER, "wanmux-server");
	struct admin_tunnel t;
	memset(&t, 0, sizeof(t));
	snprintf(t.label, sizeof(t.label), "KEY/0");
	t.info.state = "up";
	t.raw_sent = 7;	      /* the server sends down */
	t.raw_received = 900; /* and receives up */
	admin_tunnel_row(rep, &t);
	struct evbuffer *b = evbuffer_new();
	admin_render_metrics(rep, b);
	char *got = text_of(b);
	assert_non_null(strstr(got, "wanmux_bytes_total{direction=\"up\",layer=\"app\"} 900\n"));
	assert_non_null(strstr(got, "wanmux_bytes_total{direction=\"down\",layer=\"app\"} 7\n"));
	free(got);
	evbuffer_free(b);
	admin_report_free(rep);
}

static void test_admin_status_json(void **state)
{
	struct admin_report *rep = fixed_report();
	struct evbuffer *b = evbuffer_new();
	admin_render_status(rep, b);
	char *got = text_of(b);
	assert_non_null(strstr(got, "{\"daemon\":\"wanmux-client\",\"version\":\"0.1.0\","));
	assert_non_null(strstr(got, "\"tunnels\":[{\"tunnel\":\"0\",\"peer\":\"198.18.0.1:7700\","
				    "\"client\":\"\",\"state\":\"up\",\"age_s\":61,\"rtt_ms\":25,"
				    "\"ping_rtt_ms\":26,\"cwnd\":10,\"delivery_rate\":1250000,"
				    "\"retransmits\":4,\"streams\":1,\"bytes_up\":1000,"
				    "\"bytes_down\":2000,\"wire_up\":450,\"wire_down\":2100},"
				    "{\"tunnel\":\"1\","));
	assert_non_null(strstr(got, "\"streams_open\":0,\"streams\":[],"));
	assert_non_null(strstr(got, "\"limits\":[{\"name\":\"connections\",\"option\":\"--max-"
				    "connections\",\"used\":5,\"max\":4096}]"));
	assert_non_null(strstr(got, "\"bytes\":{\"up\":{\"app\":1000,\"payload\":400,\"wire\":450},"
				    "\"down\":{\"app\":2000,\"payload\":2000,\"wire\":2100}}"));
	assert_non_null(strstr(got, ",\"history\":[]}\n"));
	free(got);
	evbuffer_free(b);
	admin_report_free(rep);
}

static void test_admin_status_section(void **state)
{
	struct admin_report *rep = fixed_report();
	struct evbuffer *j = evbuffer_new(), *b = evbuffer_new();
	evbuffer_add_printf(j, "[{\"listener\":");
	admin_json_string(j, "127.0.0.1:9000");
	evbuffer_add_printf(j, ",\"members\":2}]");
	admin_status_section(rep, "reverse_listeners", j);
	/* Copied: the caller's buffer is its own. */
	assert_int_equal(evbuffer_get_length(j), strlen("[{\"listener\":\"127.0.0.1:9000\","
							"\"members\":2}]"));
	evbuffer_free(j);
	/* Beyond 8 sections, dropped (the report stays valid JSON). */
	for (int i = 0; i < 10; i++) {
		struct evbuffer *x = evbuffer_new();
		evbuffer_add_printf(x, "%d", i);
		admin_status_section(rep, "n", x);
		evbuffer_free(x);
	}
	admin_render_status(rep, b);
	char *got = text_of(b);
	assert_non_null(strstr(got, "\"max\":4096}],\"reverse_listeners\":[{\"listener\":"
				    "\"127.0.0.1:9000\",\"members\":2}],\"n\":0,"));
	assert_non_null(strstr(got, "\"n\":6,\"bytes\":"));
	assert_null(strstr(got, "\"n\":7"));
	free(got);
	evbuffer_free(b);
	admin_report_free(rep);
}

static struct sockaddr_storage addr(const char *s)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(s, ':') != NULL) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, s, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, s, &a->sin_addr), 1);
	}
	return ss;
}

static bool allowed(const struct acl *acl, const char *s)
{
	struct sockaddr_storage ss = addr(s);
	return admin_source_allowed(acl, (struct sockaddr *)&ss);
}

static void test_admin_source_allowed(void **state)
{
	/* Without --admin-allow: loopback only. */
	assert_true(allowed(NULL, "127.0.0.1"));
	assert_true(allowed(NULL, "127.3.2.1"));
	assert_true(allowed(NULL, "::1"));
	assert_true(allowed(NULL, "::ffff:127.0.0.1"));
	assert_false(allowed(NULL, "10.0.0.1"));
	assert_false(allowed(NULL, "::ffff:10.0.0.1"));
	assert_false(allowed(NULL, "2001:db8::1"));
	assert_false(admin_source_allowed(NULL, NULL));
	/* With it: exactly the CIDRs given, loopback included only if named. */
	struct acl *acl = acl_new();
	char err[128];
	assert_int_equal(acl_add(acl, "10.1.0.0/16", err, sizeof(err)), 0);
	assert_int_equal(acl_add(acl, "[2001:db8::/32]", err, sizeof(err)), 0);
	assert_true(allowed(acl, "10.1.2.3"));
	assert_false(allowed(acl, "10.2.0.1"));
	assert_true(allowed(acl, "2001:db8::5"));
	assert_false(allowed(acl, "127.0.0.1"));
	acl_free(acl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admin_label_value_escaping),
	    cmocka_unit_test(test_admin_help_escaping),
	    cmocka_unit_test(test_admin_json_string_escaping),
	    cmocka_unit_test(test_admin_number_formatting),
	    cmocka_unit_test(test_admin_fixed_metric_set_rendering),
	    cmocka_unit_test(test_admin_server_role_swaps_directions),
	    cmocka_unit_test(test_admin_status_json),
	    cmocka_unit_test(test_admin_status_section),
	    cmocka_unit_test(test_admin_source_allowed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
