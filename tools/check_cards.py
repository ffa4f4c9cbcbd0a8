#!/usr/bin/env python3
"""Dev aid: check every card in cards/ against schemas/card.schema.json and the card conventions.

Usage: python3 tools/check_cards.py [--strict] [CARDS_DIR]

Errors (exit status 1):
  * a file is not valid JSON or does not validate against the meta-schema (Draft 2020-12);
    nested output `properties` are validated against `$defs/output_property` too
  * the file name is not `<id>.json`; the set of ids or a card's title differs from the catalog below
  * a category outside the agreed set
  * input_schema without "additionalProperties": false; `required` names a missing property
  * a `{placeholder}` in a request or lookup path that is not an input (or not a required input)
  * an `$input` in a template / query / pick, `relative_url_input`, `query_input`, `headers_input`,
    `body.input`, `when.present`, a rule or a `$inputs/...` source that names no input
  * an `$option` or `when.option` / `x-when.option` that names no option, or `equals` outside its enum
  * a `map` that does not translate every value of the input's enum
  * an `x-result-sets` id that is not a result set; a `result_set` option whose enum differs from
    the result set ids; `$records`/`$record`/`$count` on a card without a list request
  * a `$<lookup>/...` source without that lookup
  * a property key that is not the snake_case of its title (the card-format.md naming rule)
  * an output without `status_code` from `$status`
Warnings (errors with --strict):
  * a property without `description`; a path-parameter input without "minLength": 1
"""
import json
import re
import sys
from pathlib import Path

try:
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover
    sys.exit("check_cards.py needs the `jsonschema` package (pip install jsonschema)")

ROOT = Path(__file__).resolve().parent.parent

# id -> exact title
CATALOG = {
    "clear_passcode": "Clear Passcode",
    "create_blueprint": "Create Blueprint",
    "create_note": "Create Note",
    "custom_api_request": "Custom API Action",
    "erase_device": "Erase Device",
    "get_activation_lock_bypass_codes": "Get Activation Lock Bypass Codes",
    "get_ade_integration": "Get ADE Integration",
    "get_blueprint": "Get Blueprint",
    "get_device": "Get Device",
    "get_filevault_recovery_key": "Get FileVault Recovery Key",
    "get_unlock_pin": "Get Unlock PIN",
    "list_ade_devices": "List ADE Devices",
    "list_ade_integrations": "List ADE Integrations",
    "list_blueprints": "List Blueprints",
    "list_device_apps": "List Device Apps",
    "list_device_library_items": "List Device Library Items",
    "list_device_notes": "List Device Notes",
    "list_devices": "List Devices",
    "lock_device": "Lock Device",
    "manage_apple_remote_desktop": "Manage Apple Remote Desktop",
    "play_lost_mode_sound": "Play Lost Mode Sound",
    "reinstall_kandji_agent": "Reinstall Kandji Agent",
    "restart_device": "Restart Device",
    "send_mdm_blank_push": "Send MDM Blank Push",
    "set_device_name": "Set Device Name",
    "shutdown_device": "Shutdown Device",
    "turn_off_lost_mode": "Turn Off Lost Mode",
    "turn_on_lost_mode": "Turn On Lost Mode",
    "unlock_user_account": "Unlock User Account",
    "update_device": "Update Device",
    "update_inventory": "Update Inventory",
    "update_lost_mode_location": "Update Lost Mode Location",
    # The newer cards of Kandji's 2025 card list (okta-workflows-kandji-cards-2025.md).
    "assign_library_item": "Assign Library Item",
    "create_tag": "Create Tag",
    "get_mac_recovery_lock_password": "Get Mac Recovery Lock Password",
    "get_threats_summary": "Get Threats Summary",
    "list_custom_apps": "List Custom Apps",
    "list_device_activity": "List Device Activity",
    "list_library_item_activity": "List Library Item Activity",
    "list_library_item_statuses": "List Library Item Statuses",
    "list_library_items": "List Library Items",
    "list_tags": "List Tags",
    "list_users": "List Users",
    "remove_library_item": "Remove Library Item",
    "update_tag": "Update Tag",
}

CATEGORIES = {
    "Devices", "Device actions", "Lost Mode", "Secrets", "Blueprints",
    "Automated Device Enrollment", "Notes", "Advanced",
    "Library Items", "Tags", "Users", "Threats",
}

# Apple/Kandji product names, and plural acronyms ("Library Item IDs"), that count as one word
# when splitting camelCase.
ONE_WORD = {"FileVault": "Filevault", "iPadOS": "Ipados", "iPad": "Ipad", "iPhone": "Iphone",
            "macOS": "Macos", "iOS": "Ios", "tvOS": "Tvos", "AppleTV": "Appletv", "IDs": "Ids"}

BUILTIN_SOURCES = {"status", "headers", "body", "error", "records", "count", "inputs", "options", "record", "picked"}


def snake(label):
    """card-format.md: lower-case, camelCase split into words, every run of other characters -> _."""
    for word, repl in ONE_WORD.items():
        label = re.sub(r"(?<![A-Za-z])" + re.escape(word) + r"(?![a-z])", repl, label)
    label = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", label)
    label = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", label)
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


class Card:
    def __init__(self, path, data, errors, warnings):
        self.path, self.c = path, data
        self.errors, self.warnings = errors, warnings
        self.inputs = data.get("input_schema", {}).get("properties", {}) or {}
        self.required = set(data.get("input_schema", {}).get("required", []) or [])
        self.options = (data.get("options_schema") or {}).get("properties", {}) or {}
        self.result_sets = {rs["id"] for rs in data.get("result_sets", []) or []}
        self.lookups = {lk["name"] for lk in data.get("lookups", []) or []}
        self.is_list = any("list" in r for r in data.get("requests", []))

    def err(self, msg):
        self.errors.append(f"{self.path.name}: {msg}")

    def warn(self, msg):
        self.warnings.append(f"{self.path.name}: {msg}")

    # -- references ------------------------------------------------------------------
    def need_input(self, name, where):
        if name not in self.inputs:
            self.err(f"{where}: input {name!r} is not in input_schema")

    def need_option(self, name, where):
        if name not in self.options:
            self.err(f"{where}: option {name!r} is not in options_schema")

    def check_when(self, when, where):
        if not isinstance(when, dict):
            return
        if "present" in when:
            self.need_input(when["present"], where)
        if "option" in when:
            self.need_option(when["option"], where)
            enum = self.options.get(when["option"], {}).get("enum")
            if enum is not None and when.get("equals") not in enum:
                self.err(f"{where}: equals {when.get('equals')!r} is not one of {enum}")

    def check_template(self, t, where):
        if isinstance(t, dict):
            if "$input" in t:
                self.need_input(t["$input"], where)
                if "map" in t:
                    enum = self.inputs.get(t["$input"], {}).get("enum")
                    if enum is not None:
                        missing = [v for v in enum if str(v) not in t["map"]]
                        if missing:
                            self.err(f"{where}: map does not translate {missing}")
                return
            if "$option" in t:
                self.need_option(t["$option"], where)
                return
            for k, v in t.items():
                self.check_template(v, f"{where}/{k}")
        elif isinstance(t, list):
            for n, v in enumerate(t):
                self.check_template(v, f"{where}/{n}")

    def check_path(self, path, where):
        for name in re.findall(r"\{([^{}]*)\}", path):
            self.need_input(name, f"{where} path {path}")
            if name in self.inputs:
                if name not in self.required:
                    # allowed only when a `when: present` guards it; checked in check_requests
                    pass
                if self.inputs[name].get("minLength", 0) < 1:
                    self.warn(f"{where}: path input {name!r} should have \"minLength\": 1")

    def check_requests(self):
        for n, r in enumerate(self.c.get("requests", [])):
            where = f"requests[{n}]"
            self.check_when(r.get("when"), where)
            if "path" in r:
                self.check_path(r["path"], where)
                guarded = (r.get("when") or {}).get("present")
                for name in re.findall(r"\{([^{}]*)\}", r["path"]):
                    if name in self.inputs and name not in self.required and name != guarded:
                        self.err(f"{where}: path input {name!r} is neither required nor guarded by when.present")
            if isinstance(r.get("method"), dict):
                self.check_template(r["method"], f"{where}/method")
            for key in ("relative_url_input", "query_input", "headers_input"):
                if key in r:
                    self.need_input(r[key], f"{where}/{key}")
            if "query" in r:
                self.check_template(r["query"], f"{where}/query")
            body = r.get("body")
            if body:
                if "input" in body:
                    self.need_input(body["input"], f"{where}/body/input")
                if "template" in body:
                    self.check_template(body["template"], f"{where}/body/template")
                    if body["encoding"] == "form" and isinstance(body["template"], dict):
                        for k, v in body["template"].items():
                            if isinstance(v, (dict, list)) and not (isinstance(v, dict) and ("$input" in v or "$option" in v)):
                                self.err(f"{where}/body: form bodies are flat; {k!r} is nested")
                if "input" not in body and "template" not in body:
                    self.err(f"{where}/body: needs a template or an input")
            if "pick" in r:
                self.check_template(r["pick"].get("where"), f"{where}/pick/where")
                if "list" not in r:
                    self.err(f"{where}: pick needs a list")
        for n, lk in enumerate(self.c.get("lookups", []) or []):
            self.check_path(lk["path"], f"lookups[{n}]")
            for name in re.findall(r"\{([^{}]*)\}", lk["path"]):
                if name in self.inputs and name not in self.required:
                    self.err(f"lookups[{n}]: path input {name!r} is not required")

    def check_rules(self):
        for n, rule in enumerate(self.c.get("rules", []) or []):
            for name in rule.get("at_least_one", []):
                self.need_input(name, f"rules[{n}]")

    def check_result_sets(self):
        rs = self.c.get("result_sets")
        if rs:
            for r in rs:
                if snake(r["label"]) != r["id"]:
                    self.err(f"result set {r['id']!r} is not the snake_case of its label {r['label']!r}")
            opt = self.options.get("result_set")
            if not opt:
                self.err("result_sets without a result_set option")
            elif sorted(opt.get("enum", [])) != sorted(self.result_sets):
                self.err(f"result_set enum {opt.get('enum')} differs from result set ids {sorted(self.result_sets)}")
            if "result_set" not in set((self.c.get("options_schema") or {}).get("required", [])):
                self.err("the result_set option should be required")
            if not self.is_list:
                self.err("result_sets on a card without a list request")

    # -- properties --------------------------------------------------------------------
    def check_property_names(self, props, where):
        for key, p in props.items():
            if not isinstance(p, dict):
                continue
            title = p.get("title")
            if title and snake(title) != key:
                self.err(f"{where}/{key}: key is not the snake_case of its title {title!r} (expected {snake(title)!r})")
            if not p.get("description"):
                self.warn(f"{where}/{key}: no description")

    def check_source(self, src, where):
        srcs = src if isinstance(src, list) else [src]
        for s in srcs:
            if not isinstance(s, str) or not s.startswith("$"):
                continue
            head, _, rest = s[1:].partition("/")
            if head == "inputs":
                self.need_input(rest.split("/")[0], where)
            elif head == "options":
                self.need_option(rest.split("/")[0], where)
            elif head in ("records", "record", "count"):
                if not self.is_list:
                    self.err(f"{where}: ${head} on a card without a list request")
            elif head == "picked":
                if not any("pick" in r for r in self.c.get("requests", [])):
                    self.err(f"{where}: $picked on a card without pick")
            elif head not in BUILTIN_SOURCES and head not in self.lookups:
                self.err(f"{where}: source {s!r} names no lookup")

    def check_outputs(self, props, where, output_validator, nested=False):
        for key, p in props.items():
            w = f"{where}/{key}"
            if nested:
                for e in output_validator.iter_errors(p):
                    self.err(f"{w}: {e.message}")
            if not isinstance(p, dict):
                continue
            if "x-source" in p:
                self.check_source(p["x-source"], w)
            for rid in p.get("x-result-sets", []) or []:
                if rid not in self.result_sets:
                    self.err(f"{w}: x-result-sets id {rid!r} is not a result set")
            if "x-when" in p:
                self.check_when(p["x-when"], f"{w}/x-when")
            if isinstance(p.get("properties"), dict):
                self.check_property_names(p["properties"], w)
                self.check_outputs(p["properties"], w, output_validator, nested=True)

    def run(self, output_validator):
        c = self.c
        expected = CATALOG.get(c.get("id"))
        if self.path.stem != c.get("id"):
            self.err(f"file name does not match id {c.get('id')!r}")
        if expected is None:
            self.err(f"id {c.get('id')!r} is not in the catalog")
        elif c.get("title") != expected:
            self.err(f"title {c.get('title')!r} should be {expected!r}")
        if c.get("category") not in CATEGORIES:
            self.err(f"category {c.get('category')!r} is not one of {sorted(CATEGORIES)}")
        isch = c.get("input_schema", {})
        if isch.get("additionalProperties") is not False:
            self.err('input_schema needs "additionalProperties": false')
        for name in self.required:
            self.need_input(name, "input_schema/required")
        osch = c.get("options_schema")
        if osch is not None:
            for name in osch.get("required", []) or []:
                self.need_option(name, "options_schema/required")
        self.check_property_names(self.inputs, "input_schema")
        self.check_property_names(self.options, "options_schema")
        self.check_requests()
        self.check_rules()
        self.check_result_sets()
        outs = c.get("output_schema", {}).get("properties", {}) or {}
        self.check_property_names(outs, "output_schema")
        self.check_outputs(outs, "output_schema", output_validator)
        sc = outs.get("status_code")
        if not sc or sc.get("x-source") != "$status" or sc.get("type") != "integer":
            self.err('output_schema needs status_code: {"type": "integer", "x-source": "$status"}')


def main(argv):
    strict = "--strict" in argv
    args = [a for a in argv if not a.startswith("--")]
    cards_dir = Path(args[0]) if args else ROOT / "cards"
    meta = json.loads((ROOT / "schemas" / "card.schema.json").read_text())
    Draft202012Validator.check_schema(meta)
    validator = Draft202012Validator(meta)
    output_validator = Draft202012Validator({"$defs": meta["$defs"], "$ref": "#/$defs/output_property"})

    errors, warnings = [], []
    seen = {}
    files = sorted(cards_dir.glob("*.json"))
    for path in files:
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            errors.append(f"{path.name}: not JSON: {e}")
            continue
        for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
            loc = "/".join(str(x) for x in e.absolute_path) or "(top)"
            errors.append(f"{path.name}: meta-schema: {loc}: {e.message}")
        if not isinstance(data, dict):
            continue
        if data.get("id") in seen:
            errors.append(f"{path.name}: id {data.get('id')!r} also used by {seen[data['id']]}")
        seen[data.get("id")] = path.name
        Card(path, data, errors, warnings).run(output_validator)

    missing = sorted(set(CATALOG) - set(seen))
    if missing:
        errors.append(f"cards missing from {cards_dir}: {', '.join(missing)}")

    for w in warnings:
        print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    failed = errors or (strict and warnings)
    print(f"{len(files)} card files, {len(errors)} errors, {len(warnings)} warnings")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
