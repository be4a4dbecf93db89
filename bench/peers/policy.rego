# examples/policy.yaml, the policy bench/e2e.ts loads into hostguard, written in Rego for
# OPA-Envoy (npm run bench:peers). It decides the same as hostguard on every Envoy fixture (the
# bench checks that before it measures) and answers the same: headers to remove, x-real-ip, the
# dynamic metadata. What it does not express: REGO_GAPS in bench/peers.ts, printed in bench/PEERS.md.
package hostguard.authz

trusted_proxies := ["10.1.0.0/16"]

trusted_headers := {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port"}

# Every forwarding header hostguard strips when it does not trust it (SPEC "The answer").
forwarding_headers := [
	"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port",
	"x-forwarded-scheme", "forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
	"cf-connecting-ip",
]

# A site inherits every field it does not set (written out: object.union would run per request).
sites := {
	"default": {
		"allowed_hosts": ["www.example.com", "shop.example.com", ".example.org"],
		"allowed_cidr_nets": ["10.0.0.0/16"], "client_allow": [], "dry_run": false,
	},
	"blog": {
		"allowed_hosts": ["blog.example.com"],
		"allowed_cidr_nets": ["10.0.0.0/16"], "client_allow": [], "dry_run": false,
	},
	"internal-api": {
		"allowed_hosts": ["api.internal.example.com"],
		"allowed_cidr_nets": ["10.0.0.0/16"], "client_allow": ["10.0.0.0/8"], "dry_run": true,
	},
	"admin": {
		"allowed_hosts": ["www.example.com", "shop.example.com", ".example.org"],
		"allowed_cidr_nets": ["10.0.0.0/16"], "client_allow": ["10.0.0.0/8"], "dry_run": false,
	},
}

health_header := "x-health"

health_secret := "secret"

health_paths := {"/health-check/"}

http := input.attributes.request.http

site_name := object.get(input.attributes, ["contextExtensions", "site"], "default")

site := sites[site_name]

# Envoy sends headers or, with encode_raw_headers, header_map (values in raw_value bytes).
headers := http.headers

# Repeated keys are joined with ",", as Envoy joins them in headers.
headers := {key: concat(",", values) |
	some h in http.headerMap.headers
	key := lower(h.key)
	values := [header_value(g) | some g in http.headerMap.headers; lower(g.key) == key]
} if not http.headers

header_value(h) := object.get(h, "value", "") if object.get(h, "rawValue", "") == ""

else := base64.decode(h.rawValue)

peer := input.attributes.source.address.socketAddress.address

is_ip(a) if net.cidr_contains("0.0.0.0/0", a)

is_ip(a) if net.cidr_contains("::/0", a)

trusted(a) if {
	some c in trusted_proxies
	net.cidr_contains(c, a)
}

peer_trusted if trusted(peer)

# An x-forwarded-for entry without its port: "1.2.3.4:5678", "[2001:db8::1]:80".
entry_address(e) := a if {
	[[_, a]] := regex.find_all_string_submatch_n(`^\[([0-9A-Fa-f:.]+)\](?::[0-9]+)?$`, e, 1)
} else := a if {
	[[_, a]] := regex.find_all_string_submatch_n(`^([0-9.]+):[0-9]+$`, e, 1)
} else := e

uses_forwarded_for if {
	peer_trusted
	"x-forwarded-for" in trusted_headers
	is_string(headers["x-forwarded-for"])
}

# The chain from the peer leftwards: nearest hop first, empty entries skipped.
entries := [trim(e, " \t") | some e in split(headers["x-forwarded-for"], ","); trim(e, " \t") != ""]

chain := [entry_address(entries[(count(entries) - 1) - i]) | some i, _ in entries]

# The first entry that is not a trusted proxy ends the walk; an entry that is not an address
# is one, and leaves the client unknown.
untrusted := {i | some i, a in chain; not trusted(a)}

walked := chain[min(untrusted)] if {
	count(untrusted) > 0
	is_ip(chain[min(untrusted)])
}

walked := chain[count(chain) - 1] if {
	count(chain) > 0
	count(untrusted) == 0
}

client := walked if uses_forwarded_for

client := peer if not uses_forwarded_for

client_allowed if count(site.client_allow) == 0

client_allowed if {
	some c in site.client_allow
	net.cidr_contains(c, client)
}

authority := http.host if http.host != ""

authority := headers[":authority"] if {
	object.get(http, "host", "") == ""
	headers[":authority"] != ""
}

authority := headers.host if {
	object.get(http, "host", "") == ""
	object.get(headers, ":authority", "") == ""
}

uses_forwarded_host if {
	peer_trusted
	"x-forwarded-host" in trusted_headers
	is_string(headers["x-forwarded-host"])
}

checked_hosts := [trim(h, " \t") | some h in split(headers["x-forwarded-host"], ",")] if uses_forwarded_host

checked_hosts := [authority] if not uses_forwarded_host

# Django's split_domain_port: lower case, no port, one trailing dot dropped; [v6] keeps brackets.
domain(h) := lower(d) if {
	[[_, d]] := regex.find_all_string_submatch_n(`^(\[[a-fA-F0-9]*:[a-fA-F0-9.:]+\])(?::[0-9]+)?$`, h, 1)
} else := lower(d) if {
	[[_, n]] := regex.find_all_string_submatch_n(`^([a-zA-Z0-9.-]+)(?::[0-9]+)?$`, h, 1)
	d := trim_suffix(n, ".")
	d != ""
}

host_matches(d) if {
	some p in site.allowed_hosts
	p == d
}

host_matches(d) if {
	some p in site.allowed_hosts
	startswith(p, ".")
	endswith(d, p)
}

host_matches(d) if {
	some p in site.allowed_hosts
	startswith(p, ".")
	d == substring(p, 1, -1)
}

host_matches(_) if "*" in site.allowed_hosts

host_in_cidr_nets(d) if {
	ip := trim_suffix(trim_prefix(d, "["), "]")
	is_ip(ip)
	some c in site.allowed_cidr_nets
	net.cidr_contains(c, ip)
}

host_allowed(d) if host_matches(d)

host_allowed(d) if host_in_cidr_nets(d)

invalid_host if count(checked_hosts) == 0

invalid_host if {
	some h in checked_hosts
	not domain(h)
}

health_check if {
	headers[health_header] == health_secret
	split(http.path, "?")[0] in health_paths
}

# First match decides, in SPEC's order.
decision := ["deny", "unknown_site", 403] if not site

else := ["allow", "health_check", 200] if health_check

else := ["deny", "client_not_allowed", 403] if not client_allowed

else := ["deny", "invalid_host", 400] if invalid_host

else := ["allow", "host_allowed", 200] if {
	every h in checked_hosts {
		host_matches(domain(h))
	}
}

else := ["allow", "host_cidr", 200] if {
	every h in checked_hosts {
		host_allowed(domain(h))
	}
}

else := ["deny", "host_not_allowed", 403]

# Requests without an HTTP part: the client is the peer.
tcp_decision := ["allow", "tcp_client_allowed", 200] if {
	count(site.client_allow) > 0
	client_allowed
} else := ["deny", "not_http", 403]

final := decision if http

final := tcp_decision if not http

enforced := final[0] == "allow"

enforced if sites[site_name].dry_run

# Computed once per request, so that the list below only tests set membership.
kept_headers := trusted_headers if peer_trusted

else := set()

client_known if is_ip(client)

set_headers := {"x-real-ip"} if client_known

else := set()

to_remove := [h | some h in forwarding_headers; not h in kept_headers; not h in set_headers]

metadata := object.union(
	{"decision": final[0], "reason": final[1], "site": site_name, "mode": mode},
	{"client": client | client_known},
)

mode := "dry_run" if sites[site_name].dry_run

else := "enforce"

result := {
	"allowed": true,
	"headers": {"x-real-ip": client | client_known},
	"request_headers_to_remove": to_remove,
	"dynamic_metadata": metadata,
} if enforced

result := {
	"allowed": false,
	"http_status": final[2],
	"body": "Forbidden",
	"dynamic_metadata": metadata,
} if not enforced
