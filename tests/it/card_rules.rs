//! `cards check` (the card loader) refuses each kind of broken card: one test per rule, each with
//! a built-in card broken in exactly one place, which must be refused with its file name and the
//! JSON pointer of that place (src/catalog/compile.rs; docs/card-format.md, "What `cards check`
//! verifies").

use std::process::Command;

use crate::harness::builtin_card;
use kandji_connector::catalog::{CardError, Catalog};
use serde_json::{Value, json};

/// A built-in card, with `id` as its id (its file will be `<id>.json`).
fn card(base: &str, id: &str) -> Value {
    let mut card = builtin_card(base);
    card["id"] = json!(id);
    card
}

/// The errors of loading `card` as the operator's card file `<id>.json`.
fn errors_of(id: &str, card: &Value) -> Vec<CardError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{id}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(card).unwrap()).unwrap();
    Catalog::load(Some(dir.path())).err().unwrap_or_default()
}

/// `$name`: the card `$base`, changed by `$change`, is refused with exactly one error, at
/// `$pointer`, whose message contains `$message`.
macro_rules! refused {
    ($name:ident: $base:literal, |$c:ident| $change:block, $pointer:literal, $message:literal) => {
        #[test]
        fn $name() {
            let id = stringify!($name);
            let mut $c = card($base, id);
            $change
            let errors = errors_of(id, &$c);
            let [e] = errors.as_slice() else {
                panic!("expected one error, got {errors:#?}");
            };
            assert!(e.file.ends_with(&format!("/{id}.json")), "{e}");
            assert_eq!(e.pointer, $pointer, "{e}");
            assert!(e.message.contains($message), "{e}");
            assert_eq!(e.to_string(), format!("{}: {}: {}", e.file, $pointer, e.message));
        }
    };
}

#[test]
fn the_cards_broken_below_are_valid_as_they_are() {
    for base in [
        "turn_on_lost_mode",
        "list_devices",
        "list_ade_devices",
        "get_blueprint",
        "get_device",
        "get_device_trust",
        "custom_api_request",
        "create_blueprint",
        "manage_apple_remote_desktop",
        "restart_device",
    ] {
        let errors = errors_of(base, &card(base, base));
        assert!(errors.is_empty(), "{base}: {errors:#?}");
    }
}

/// The example of issue 12: three typos that used to load, each becoming a silent null.
#[test]
fn cards_check_names_each_typo_with_file_and_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = card("turn_on_lost_mode", "typo_card");
    c["requests"][0]["when"] = json!({"present": "devcie_id"});
    c["requests"][0]["body"]["template"]["Footnote"] = json!({"$option": "no_such_option"});
    c["output_schema"]["properties"]["device_name"]["x-source"] = json!("$devcie/device_name");
    let file = dir.path().join("typo_card.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kandji-connector"))
        .args(["cards", "check", "--dir"])
        .arg(dir.path())
        .env_remove("KANDJI_CONNECTOR_CARDS_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let f = file.display();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{f}: /requests/0/when/present: \"devcie_id\" is not an input\n\
             {f}: /requests/0/body/template/Footnote/$option: \"no_such_option\" is not an option\n\
             {f}: /output_schema/properties/device_name/x-source: $devcie: \"devcie\" is not a lookup of this card\n"
        )
    );
}

// --- the file and the meta-schema -----------------------------------------------------------

refused!(file_name_is_the_id: "restart_device", |c| {
    c["id"] = json!("restart_it");
}, "/id", "must match the file name");

refused!(meta_schema_refuses_an_output_without_source: "restart_device", |c| {
    let status = &mut c["output_schema"]["properties"]["status_code"];
    status["x-sorce"] = status["x-source"].take();
    status.as_object_mut().unwrap().remove("x-source");
}, "/output_schema/properties/status_code", "x-source");

refused!(meta_schema_refuses_a_group_member_without_source: "get_device", |c| {
    c["output_schema"]["properties"]["device"]["properties"]["device_id"]
        .as_object_mut()
        .unwrap()
        .remove("x-source");
}, "/output_schema/properties/device/properties/device_id", "x-source");

refused!(category_is_one_of_the_catalogs: "turn_on_lost_mode", |c| {
    c["category"] = json!("Lost mode");
}, "/category", "\"Lost mode\" is not one of");

refused!(effect_is_required: "restart_device", |c| {
    c.as_object_mut().unwrap().remove("effect");
}, "/", "\"effect\" is a required property");

refused!(effect_is_read_change_or_destructive: "restart_device", |c| {
    c["effect"] = json!("harmless");
}, "/effect", "\"harmless\" is not one of");

refused!(keys_are_the_snake_case_of_their_titles: "turn_on_lost_mode", |c| {
    c["input_schema"]["properties"]["footnote"]["title"] = json!("Foot Note");
}, "/input_schema/properties/footnote", "the key should be \"foot_note\"");

// --- inputs and options ---------------------------------------------------------------------

refused!(input_schema_refuses_unknown_inputs: "turn_on_lost_mode", |c| {
    c["input_schema"].as_object_mut().unwrap().remove("additionalProperties");
}, "/input_schema", "additionalProperties");

refused!(required_inputs_are_inputs: "turn_on_lost_mode", |c| {
    c["input_schema"]["required"] = json!(["device_id", "serial"]);
}, "/input_schema/required/1", "\"serial\" is not an input");

refused!(required_options_are_options: "get_device", |c| {
    c["options_schema"]["required"] = json!(["detail"]);
}, "/options_schema/required/0", "\"detail\" is not an option");

refused!(rules_name_inputs: "get_blueprint", |c| {
    c["rules"][0]["at_least_one"][1] = json!("blueprint_nme");
}, "/rules/0/at_least_one/1", "\"blueprint_nme\" is not an input");

refused!(rule_options_are_options: "update_device", |c| {
    c["rules"][0]["or_options"][1] = json!("user");
}, "/rules/0/or_options/1", "\"user\" is not an option");

refused!(rule_options_are_switches: "list_devices", |c| {
    c["rules"] = json!([{"at_least_one": ["device_id", "serial_number"], "or_options": ["result_set"]}]);
}, "/rules/0/or_options/0", "the option \"result_set\" must be a boolean");

refused!(at_most_one_names_inputs: "list_devices", |c| {
    c["rules"][0]["at_most_one"][1] = json!("user_email_contain");
}, "/rules/0/at_most_one/1", "\"user_email_contain\" is not an input");

refused!(input_aliases_are_inputs: "erase_device", |c| {
    c["requests"][0]["body"]["template"]["DisallowProximitySetup"]["or"] = json!(["disallow_proximty"]);
}, "/requests/0/body/template/DisallowProximitySetup/or/0", "\"disallow_proximty\" is not an input");

refused!(text_as_list_is_only_on_lists_of_texts: "update_device", |c| {
    c["input_schema"]["properties"]["asset_tag"]["x-text-as-list"] = json!(true);
}, "/input_schema/properties/asset_tag/x-text-as-list", "only a list of texts");

refused!(integer_as_text_is_only_on_text_inputs: "erase_device", |c| {
    c["input_schema"]["properties"]["preserve_data_plan"]["x-integer-as-text"] = json!(true);
}, "/input_schema/properties/preserve_data_plan/x-integer-as-text", "only a text input");

// --- choosing a request -----------------------------------------------------------------------

refused!(when_any_present_names_inputs: "list_ade_devices", |c| {
    c["requests"][0]["when"]["any_present"][2] = json!("modle");
}, "/requests/0/when/any_present/2", "\"modle\" is not an input");

refused!(when_present_names_an_input: "turn_on_lost_mode", |c| {
    c["requests"][0]["when"] = json!({"present": "devcie_id"});
}, "/requests/0/when/present", "\"devcie_id\" is not an input");

refused!(when_option_names_an_option: "get_device", |c| {
    c["requests"][0]["when"]["option"] = json!("detail");
}, "/requests/0/when/option", "\"detail\" is not an option");

refused!(when_equals_is_one_of_the_options_values: "get_device", |c| {
    c["requests"][1]["when"]["equals"] = json!("ful");
}, "/requests/1/when/equals", "\"ful\" is not one of the option's values");

refused!(a_request_after_an_unconditional_one_is_refused: "turn_on_lost_mode", |c| {
    let again = c["requests"][0].clone();
    c["requests"].as_array_mut().unwrap().push(again);
}, "/requests/1", "is never sent");

// --- building a request -----------------------------------------------------------------------

refused!(path_placeholders_are_inputs: "turn_on_lost_mode", |c| {
    c["requests"][0]["path"] = json!("/devices/{devcie_id}/action/enablelostmode");
}, "/requests/0/path", "{devcie_id} is not an input");

refused!(path_inputs_are_required_or_guarded: "restart_device", |c| {
    c["input_schema"]["required"] = json!([]);
}, "/requests/0/path", "{device_id} may be absent");

refused!(path_braces_balance: "restart_device", |c| {
    c["requests"][0]["path"] = json!("/devices/{device_id/action/restart");
}, "/requests/0/path", "unbalanced");

refused!(path_inputs_refuse_an_empty_value: "restart_device", |c| {
    c["input_schema"]["properties"]["device_id"]
        .as_object_mut()
        .unwrap()
        .remove("minLength");
}, "/input_schema/properties/device_id", "minLength");

refused!(input_references_name_inputs: "turn_on_lost_mode", |c| {
    c["requests"][0]["body"]["template"]["Message"] = json!({"$input": "lock_mesage"});
}, "/requests/0/body/template/Message/$input", "\"lock_mesage\" is not an input");

refused!(option_references_name_options: "turn_on_lost_mode", |c| {
    c["requests"][0]["body"]["template"]["Footnote"] = json!({"$option": "no_such_option"});
}, "/requests/0/body/template/Footnote/$option", "\"no_such_option\" is not an option");

refused!(query_templates_name_inputs: "list_devices", |c| {
    c["requests"][0]["query"]["user_email"] = json!({"$input": "user_mail"});
}, "/requests/0/query/user_email/$input", "\"user_mail\" is not an input");

refused!(resolver_args_name_inputs: "get_device_trust", |c| {
    c["requests"][0]["args"]["serial_number"] = json!({"$input": "serial"});
}, "/requests/0/args/serial_number/$input", "\"serial\" is not an input");

refused!(a_reference_names_by_a_string: "turn_on_lost_mode", |c| {
    c["requests"][0]["body"]["template"]["Message"] = json!({"$input": 5});
}, "/requests/0/body/template/Message/$input", "must be a name");

refused!(a_reference_takes_only_map: "turn_on_lost_mode", |c| {
    c["requests"][0]["body"]["template"]["Message"] =
        json!({"$input": "lock_message", "default": "Lost"});
}, "/requests/0/body/template/Message/default", "takes only $input, or, map and if_blank");

refused!(if_blank_names_a_boolean_option: "update_device", |c| {
    c["requests"][0]["body"]["template"]["tags"]["if_blank"]["option"] = json!("tag");
}, "/requests/0/body/template/tags/if_blank/option", "\"tag\" is not an option");

refused!(if_blank_says_what_to_send: "update_device", |c| {
    c["requests"][0]["body"]["template"]["tags"]["if_blank"] = json!({"option": "tags"});
}, "/requests/0/body/template/tags/if_blank", "must be {\"option\"");

refused!(a_map_is_an_object: "manage_apple_remote_desktop", |c| {
    c["requests"][0]["body"]["template"]["EnableRemoteDesktop"]["map"] = json!(["On", "Off"]);
}, "/requests/0/body/template/EnableRemoteDesktop/map", "must be an object");

refused!(a_map_translates_every_value_of_the_inputs_enum: "manage_apple_remote_desktop", |c| {
    c["requests"][0]["body"]["template"]["EnableRemoteDesktop"]["map"] = json!({"On": true});
}, "/requests/0/body/template/EnableRemoteDesktop/map", "does not translate [\"Off\"]");

refused!(method_option_is_an_option: "custom_api_request", |c| {
    c["requests"][0]["method"] = json!({"$option": "request_typ"});
}, "/requests/0/method/$option", "\"request_typ\" is not an option");

refused!(method_option_offers_only_http_methods: "custom_api_request", |c| {
    c["options_schema"]["properties"]["request_type"]["enum"] = json!(["GET", "FETCH"]);
}, "/requests/0/method/$option", "must be an enum of GET, POST, PUT, PATCH, DELETE");

refused!(relative_url_input_is_a_string_input: "custom_api_request", |c| {
    c["requests"][0]["relative_url_input"] = json!("query");
}, "/requests/0/relative_url_input", "must be a string");

refused!(query_input_is_an_object_input: "custom_api_request", |c| {
    c["requests"][0]["query_input"] = json!("relative_url");
}, "/requests/0/query_input", "must be an object");

refused!(headers_input_is_an_input: "custom_api_request", |c| {
    c["requests"][0]["headers_input"] = json!("header");
}, "/requests/0/headers_input", "\"header\" is not an input");

refused!(body_input_is_an_input: "custom_api_request", |c| {
    c["requests"][0]["body"]["input"] = json!("bdy");
}, "/requests/0/body/input", "\"bdy\" is not an input");

refused!(a_body_has_a_template_or_an_input: "turn_on_lost_mode", |c| {
    c["requests"][0]["body"].as_object_mut().unwrap().remove("template");
}, "/requests/0/body", "needs a template or an input");

refused!(a_body_has_not_both: "custom_api_request", |c| {
    c["requests"][0]["body"]["template"] = json!({"a": 1});
}, "/requests/0/body", "not both");

refused!(a_form_body_is_flat: "create_blueprint", |c| {
    c["requests"][0]["body"]["template"]["enrollment"] = json!({"code": "x"});
}, "/requests/0/body/template/enrollment", "a form body is flat");

// --- lists and picks --------------------------------------------------------------------------

refused!(list_records_are_json_pointers: "list_devices", |c| {
    c["requests"][0]["list"]["records"] = json!(["", "results"]);
}, "/requests/0/list/records/1", "\"results\" is not a JSON pointer");

refused!(a_list_names_its_records: "list_devices", |c| {
    c["requests"][0]["list"]["records"] = json!([]);
}, "/requests/0/list/records", "names no JSON pointer");

refused!(only_offset_and_drf_lists_take_a_size_param: "list_ade_devices", |c| {
    c["requests"][0]["list"]["size_param"] = json!("page_size");
}, "/requests/0/list/size_param", "only offset and drf");

refused!(a_pick_needs_a_list: "get_blueprint", |c| {
    c["requests"][1].as_object_mut().unwrap().remove("list");
}, "/requests/1/pick", "it needs a list");

refused!(pick_fields_are_json_pointers: "get_blueprint", |c| {
    let wanted = c["requests"][1]["pick"]["where"]["/name"].take();
    c["requests"][1]["pick"]["where"] = json!({"name": wanted});
}, "/requests/1/pick/where/name", "is not a JSON pointer");

refused!(pick_values_name_inputs: "get_blueprint", |c| {
    c["requests"][1]["pick"]["where"]["/name"] = json!({"$input": "blueprint_nam"});
}, "/requests/1/pick/where/~1name/$input", "\"blueprint_nam\" is not an input");

// --- result sets ------------------------------------------------------------------------------

refused!(result_set_ids_are_unique: "list_devices", |c| {
    let again = c["result_sets"][0].clone();
    c["result_sets"].as_array_mut().unwrap().push(again);
}, "/result_sets/4/id", "used by two result sets");

refused!(result_set_ids_are_the_snake_case_of_their_labels: "list_devices", |c| {
    c["result_sets"][0]["label"] = json!("First Record");
}, "/result_sets/0/id", "the snake_case of its label");

refused!(result_sets_need_a_result_set_option: "list_devices", |c| {
    c["options_schema"]["properties"].as_object_mut().unwrap().remove("result_set");
    c["options_schema"]["required"] = json!([]);
}, "/options_schema", "needs a result_set option");

refused!(the_result_set_option_offers_exactly_the_result_sets: "list_devices", |c| {
    c["options_schema"]["properties"]["result_set"]["enum"]
        .as_array_mut()
        .unwrap()
        .pop();
}, "/options_schema/properties/result_set", "must list exactly the result set ids");

refused!(the_result_set_option_is_required: "list_devices", |c| {
    c["options_schema"]["required"] = json!([]);
}, "/options_schema/required", "must include \"result_set\"");

refused!(a_result_set_option_needs_result_sets: "turn_on_lost_mode", |c| {
    c["options_schema"] = json!({
        "type": "object", "additionalProperties": false, "required": ["result_set"],
        "properties": {"result_set": {"title": "Result Set", "type": "string", "enum": ["all"]}}
    });
}, "/options_schema/properties/result_set", "no result_sets");

refused!(result_sets_need_a_list_in_every_request: "list_devices", |c| {
    c["requests"][0]["pick"] = json!({"where": {"/device_id": {"$input": "device_id"}}});
}, "/requests/0", "lists records (a list without pick) in every request");

// --- lookups ----------------------------------------------------------------------------------

refused!(lookup_paths_name_inputs: "turn_on_lost_mode", |c| {
    c["lookups"][0]["path"] = json!("/devices/{device}");
}, "/lookups/0/path", "{device} is not an input");

refused!(lookup_path_inputs_are_required: "turn_on_lost_mode", |c| {
    c["lookups"][0]["path"] = json!("/devices/{lock_message}");
}, "/lookups/0/path", "a lookup runs whatever the inputs");

refused!(lookup_names_are_unique: "turn_on_lost_mode", |c| {
    let again = c["lookups"][0].clone();
    c["lookups"].as_array_mut().unwrap().push(again);
}, "/lookups/1/name", "used by two lookups");

refused!(lookup_names_are_not_built_in_sources: "turn_on_lost_mode", |c| {
    c["lookups"].as_array_mut().unwrap().push(json!({"name": "body", "path": "/devices/{device_id}"}));
}, "/lookups/1/name", "$body is a built-in source");

// --- outputs ----------------------------------------------------------------------------------

refused!(status_code_is_an_output: "turn_on_lost_mode", |c| {
    c["output_schema"]["properties"].as_object_mut().unwrap().remove("status_code");
}, "/output_schema/properties", "\"status_code\" is a required property");

refused!(lookup_sources_name_lookups: "turn_on_lost_mode", |c| {
    c["output_schema"]["properties"]["device_name"]["x-source"] = json!("$devcie/device_name");
}, "/output_schema/properties/device_name/x-source", "\"devcie\" is not a lookup");

refused!(input_sources_name_inputs: "turn_on_lost_mode", |c| {
    c["output_schema"]["properties"]["message"]["x-source"][2] = json!("$inputs/lock_mesage");
}, "/output_schema/properties/message/x-source/2", "\"lock_mesage\" is not an input");

refused!(option_sources_name_options: "get_device", |c| {
    c["output_schema"]["properties"]["details"] =
        json!({"title": "Details", "type": "string", "x-source": "$options/detail"});
}, "/output_schema/properties/details/x-source", "\"detail\" is not an option");

refused!(record_sources_need_a_list: "turn_on_lost_mode", |c| {
    c["output_schema"]["properties"]["first"] =
        json!({"title": "First", "type": ["object", "null"], "x-source": "$record"});
}, "/output_schema/properties/first/x-source", "$record needs a list request");

refused!(picked_sources_need_a_pick: "list_devices", |c| {
    c["output_schema"]["properties"]["model"]["x-source"] = json!("$picked/model");
}, "/output_schema/properties/model/x-source", "$picked needs a request with a pick");

refused!(whole_value_sources_take_no_pointer: "custom_api_request", |c| {
    c["output_schema"]["properties"]["headers"]["x-source"] = json!("$headers/content-type");
}, "/output_schema/properties/headers/x-source", "$headers takes no pointer");

refused!(source_pointers_are_json_pointers: "get_device", |c| {
    c["output_schema"]["properties"]["apple_remote_desktop_turned_on"]["x-source"] =
        json!("/security_information/remote~desktop");
}, "/output_schema/properties/apple_remote_desktop_turned_on/x-source", "is not a JSON pointer");

refused!(x_result_sets_name_result_sets: "list_devices", |c| {
    c["output_schema"]["properties"]["devices"]["x-result-sets"] = json!(["first_200_records"]);
}, "/output_schema/properties/devices/x-result-sets/0", "\"first_200_records\" is not one of the card's result sets");

refused!(x_when_names_an_option: "get_device", |c| {
    c["output_schema"]["properties"]["device"]["x-when"]["option"] = json!("detail");
}, "/output_schema/properties/device/x-when/option", "\"detail\" is not an option");

refused!(only_top_level_outputs_are_shown_or_hidden: "get_device", |c| {
    c["output_schema"]["properties"]["device"]["properties"]["device_id"]["x-when"] =
        json!({"option": "details", "equals": "basic"});
}, "/output_schema/properties/device/properties/device_id/x-when", "only a top-level output");
