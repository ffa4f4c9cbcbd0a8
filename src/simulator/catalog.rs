//! Static reference data the fixtures draw from: hardware models, OS releases, names, apps and
//! library items. Devices point into these tables (`&'static`), which keeps 100,000 devices small.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Platform {
    Mac,
    #[serde(rename = "iPhone")]
    IPhone,
    #[serde(rename = "iPad")]
    IPad,
    #[serde(rename = "AppleTV")]
    AppleTv,
    Vision,
}

impl Platform {
    pub const ALL: [Platform; 5] = [
        Platform::Mac,
        Platform::IPhone,
        Platform::IPad,
        Platform::AppleTv,
        Platform::Vision,
    ];

    /// The spelling Kandji uses in `platform` and in `?platform=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Mac => "Mac",
            Platform::IPhone => "iPhone",
            Platform::IPad => "iPad",
            Platform::AppleTv => "AppleTV",
            Platform::Vision => "Vision",
        }
    }

    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// iPhone and iPad: the platforms for passcode and Lost Mode commands.
    pub fn is_ios(self) -> bool {
        matches!(self, Platform::IPhone | Platform::IPad)
    }

    /// The `os` value of an ADE device record.
    pub fn ade_os(self) -> &'static str {
        match self {
            Platform::Mac => "OSX",
            Platform::IPhone => "iOS",
            Platform::IPad => "iPadOS",
            Platform::AppleTv => "tvOS",
            Platform::Vision => "visionOS",
        }
    }
}

/// One hardware model.
#[derive(Debug)]
pub struct Model {
    pub platform: Platform,
    /// Kandji's `model` string, e.g. "MacBook Air (M1, 2020)".
    pub name: &'static str,
    pub identifier: &'static str,
    /// The short family name ("MacBook Air") used in hardware_overview and ADE records.
    pub family_name: &'static str,
    pub processor: &'static str,
    pub processor_speed: &'static str,
    pub cores: &'static str,
    pub memory: &'static str,
    pub capacity_gb: f32,
    pub ade_description: &'static str,
    pub colors: &'static [&'static str],
    pub apple_silicon: bool,
    pub cellular: bool,
}

macro_rules! model {
    ($p:ident, $name:expr, $id:expr, $fam:expr, $proc:expr, $speed:expr, $cores:expr, $mem:expr,
     $cap:expr, $desc:expr, $colors:expr, $as:expr, $cell:expr) => {
        Model {
            platform: Platform::$p,
            name: $name,
            identifier: $id,
            family_name: $fam,
            processor: $proc,
            processor_speed: $speed,
            cores: $cores,
            memory: $mem,
            capacity_gb: $cap,
            ade_description: $desc,
            colors: $colors,
            apple_silicon: $as,
            cellular: $cell,
        }
    };
}

#[rustfmt::skip]
pub static MODELS: &[Model] = &[
    model!(Mac, "MacBook Air (M1, 2020)", "MacBookAir10,1", "MacBook Air", "Apple M1", "", "8", "8 GB LPDDR4", 228.27, "MBA 13.3 SLV/8C CPU/7C GPU/8GB/256GB-USA", &["SILVER", "GOLD", "SPACE GRAY"], true, false),
    model!(Mac, "MacBook Air (M2, 2022)", "Mac14,2", "MacBook Air", "Apple M2", "", "8", "16 GB LPDDR5", 460.43, "MBA 13.6 MDN/8C CPU/8C GPU/16GB/512GB-USA", &["MIDNIGHT", "STARLIGHT", "SILVER"], true, false),
    model!(Mac, "MacBook Air (13-inch, M3, 2024)", "Mac15,12", "MacBook Air", "Apple M3", "", "8", "16 GB LPDDR5", 460.43, "MBA 13 M3 SLV/8C CPU/10C GPU/16GB/512GB-USA", &["SILVER", "MIDNIGHT"], true, false),
    model!(Mac, "MacBook Pro (14-inch, 2023)", "Mac14,9", "MacBook Pro", "Apple M2 Pro", "", "10", "16 GB LPDDR5", 460.43, "MBP 14 SG/10C CPU/16C GPU/16GB/512GB-USA", &["SPACE GRAY", "SILVER"], true, false),
    model!(Mac, "MacBook Pro (16-inch, Nov 2023)", "Mac15,7", "MacBook Pro", "Apple M3 Pro", "", "12", "36 GB LPDDR5", 994.66, "MBP 16 SB/12C CPU/18C GPU/36GB/1TB-USA", &["SPACE BLACK", "SILVER"], true, false),
    model!(Mac, "MacBook Pro (16-inch, 2019)", "MacBookPro16,1", "MacBook Pro", "6-Core Intel Core i7", "2.6 GHz", "6", "16 GB 2667 MHz DDR4", 499.96, "MBP 16.0 SG/2.6GHZ 6C/16GB/512GB-USA", &["SPACE GRAY", "SILVER"], false, false),
    model!(Mac, "Mac mini (2023)", "Mac14,3", "Mac mini", "Apple M2", "", "8", "8 GB LPDDR5", 228.27, "MAC MINI/M2 8C CPU/10C GPU/8GB/256GB-USA", &["SILVER"], true, false),
    model!(Mac, "iMac (24-inch, 2023)", "Mac15,4", "iMac", "Apple M3", "", "8", "8 GB LPDDR5", 228.27, "IMAC 24 BLU/8C CPU/8C GPU/8GB/256GB-USA", &["BLUE", "GREEN", "SILVER"], true, false),
    model!(Mac, "Mac Studio (2023)", "Mac14,13", "Mac Studio", "Apple M2 Max", "", "12", "32 GB LPDDR5", 460.43, "MAC STUDIO/M2 MAX 12C/30C GPU/32GB/512GB-USA", &["SILVER"], true, false),
    model!(IPhone, "iPhone 16 Pro", "iPhone17,1", "iPhone 16 Pro", "", "", "", "", 256.0, "IPHONE 16 PRO BLACK TITANIUM 256GB-USA", &["BLACK TITANIUM", "NATURAL TITANIUM"], true, true),
    model!(IPhone, "iPhone 15 Pro", "iPhone16,1", "iPhone 15 Pro", "", "", "", "", 128.0, "IPHONE 15 PRO BLUE TITANIUM 128GB-USA", &["BLUE TITANIUM", "WHITE TITANIUM"], true, true),
    model!(IPhone, "iPhone 15", "iPhone15,4", "iPhone 15", "", "", "", "", 128.0, "IPHONE 15 BLACK 128GB-USA", &["BLACK", "BLUE", "PINK"], true, true),
    model!(IPhone, "iPhone 14", "iPhone14,7", "iPhone 14", "", "", "", "", 128.0, "IPHONE 14 MIDNIGHT 128GB-USA", &["MIDNIGHT", "STARLIGHT"], true, true),
    model!(IPhone, "iPhone 13", "iPhone14,5", "iPhone 13", "", "", "", "", 128.0, "IPHONE 13 MIDNIGHT 128GB-USA", &["MIDNIGHT", "STARLIGHT", "BLUE"], true, true),
    model!(IPhone, "iPhone SE (3rd generation)", "iPhone14,6", "iPhone SE (3rd Generation)", "", "", "", "", 64.0, "IPHONE SE MIDNIGHT 64GB-USA", &["MIDNIGHT", "STARLIGHT"], true, true),
    model!(IPhone, "iPhone 11 Pro Max", "iPhone12,5", "iPhone 11 Pro Max", "", "", "", "", 256.0, "IPHONE 11 PRO MAX SPACE GRAY 256GB-USA", &["SPACE GRAY", "GOLD"], true, true),
    model!(IPad, "iPad (8th generation) (Wi-Fi)", "iPad11,6", "iPad (8th Generation)", "", "", "", "", 128.0, "IPAD WI-FI 128GB SILVER-USA", &["SILVER", "SPACE GRAY"], true, false),
    model!(IPad, "iPad (10th generation) (Wi-Fi)", "iPad13,18", "iPad (10th Generation)", "", "", "", "", 64.0, "IPAD 10.9 WI-FI 64GB BLUE-USA", &["BLUE", "SILVER"], true, false),
    model!(IPad, "iPad Air (4th generation) Wi-Fi + Cellular", "iPad13,2", "iPad Air (4th Generation)", "", "", "", "", 256.0, "IPAD AIR WI-FI + CELL 256GB SKY BLUE-USA", &["SKY BLUE", "SILVER"], true, true),
    model!(IPad, "iPad Pro (11-inch) (4th generation) (Wi-Fi)", "iPad14,3", "iPad Pro 11-inch (4th Generation)", "", "", "", "", 256.0, "IPAD PRO 11 WI-FI 256GB SPACE GRAY-USA", &["SPACE GRAY", "SILVER"], true, false),
    model!(IPad, "iPad mini (6th generation) (Wi-Fi)", "iPad14,1", "iPad mini (6th Generation)", "", "", "", "", 64.0, "IPAD MINI WI-FI 64GB PURPLE-USA", &["PURPLE", "STARLIGHT"], true, false),
    model!(AppleTv, "Apple TV 4K (2nd generation)", "AppleTV11,1", "Apple TV 4K", "", "", "", "", 32.0, "APPLE TV 4K 32GB-USA", &["BLACK"], true, false),
    model!(AppleTv, "Apple TV 4K (3rd generation)", "AppleTV14,1", "Apple TV 4K", "", "", "", "", 64.0, "APPLE TV 4K WI-FI 64GB-USA", &["BLACK"], true, false),
    model!(AppleTv, "Apple TV HD", "AppleTV5,3", "Apple TV HD", "", "", "", "", 32.0, "APPLE TV HD 32GB-USA", &["BLACK"], false, false),
    model!(Vision, "Apple Vision Pro", "RealityDevice14,1", "Apple Vision Pro", "", "", "", "", 256.0, "APPLE VISION PRO 256GB-USA", &["SILVER"], true, false),
];

pub fn models_of(platform: Platform) -> Vec<&'static Model> {
    MODELS.iter().filter(|m| m.platform == platform).collect()
}

/// (os_version, build, weight)
pub fn os_releases(platform: Platform) -> &'static [(&'static str, &'static str, u32)] {
    match platform {
        Platform::Mac => &[
            ("15.6.1", "24G90", 30),
            ("15.5", "24F74", 20),
            ("14.7.6", "23H626", 20),
            ("14.4.1", "23E224", 10),
            ("13.7.6", "22H625", 10),
            ("15.6", "24G84", 10),
        ],
        Platform::IPhone | Platform::IPad => &[
            ("18.6.2", "22G100", 35),
            ("18.5", "22F76", 25),
            ("17.7.2", "21H221", 20),
            ("17.5.1", "21F90", 10),
            ("16.7.10", "20H350", 10),
        ],
        Platform::AppleTv => &[("18.6", "22M84", 60), ("17.6", "21M71", 40)],
        Platform::Vision => &[("2.5", "22O473", 70), ("2.4", "22O238", 30)],
    }
}

pub static AGENT_VERSIONS: &[(&str, u32)] = &[
    ("5.0.3 (5640)", 50),
    ("4.9.2 (5485)", 30),
    ("4.5.9 (5160)", 20),
];

pub static FIRST_NAMES: &[&str] = &[
    "Avery",
    "Blake",
    "Carmen",
    "Dana",
    "Eli",
    "Farah",
    "Gwen",
    "Hiro",
    "Ines",
    "Jonas",
    "Kiara",
    "Luis",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rafael",
    "Sofia",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Amir",
    "Bea",
    "Chen",
    "Diego",
    "Elena",
    "Femi",
    "Grace",
    "Hannah",
    "Ivan",
    "Jade",
    "Kenji",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Paula",
    "Rosa",
    "Sam",
    "Theo",
    "Valentina",
    "Will",
    "Yara",
    "Zane",
    "Aisha",
];

pub static LAST_NAMES: &[&str] = &[
    "Anderson",
    "Baker",
    "Castro",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Mensah",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quintero",
    "Rossi",
    "Singh",
    "Tanaka",
    "Usman",
    "Varga",
    "Wong",
    "Xu",
    "Yilmaz",
    "Zhang",
    "Ahmed",
    "Bianchi",
    "Chowdhury",
    "Diaz",
    "Evans",
    "Fernandes",
    "Gupta",
    "Hughes",
    "Ivanova",
    "Johansson",
    "Kim",
    "Larsen",
    "Moreau",
    "Novak",
    "Olsen",
    "Patel",
    "Reyes",
    "Schmidt",
    "Torres",
    "Walker",
];

pub static DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "IT",
    "Support",
    "People",
];

pub static JOB_TITLES: &[&str] = &[
    "Software Engineer",
    "Account Executive",
    "Product Manager",
    "Designer",
    "IT Administrator",
    "Support Specialist",
    "Analyst",
];

pub static ROOM_NAMES: &[&str] = &[
    "Conference Room",
    "Lobby",
    "Boardroom",
    "Training Room",
    "Huddle Room",
];

pub static TAG_NAMES: &[&str] = &[
    "accuhive_01",
    "accuhive_02",
    "remote",
    "hq-sf",
    "hq-nyc",
    "loaner",
    "executive",
    "contractor",
];

/// A blueprint of the generated tenant.
pub struct BlueprintSeed {
    pub name: &'static str,
    pub icon: &'static str,
    pub color: &'static str,
    /// "classic" or "map".
    pub kind: &'static str,
    pub description: &'static str,
    /// The platforms whose devices are assigned to it.
    pub platforms: &'static [Platform],
}

pub static BLUEPRINTS: &[BlueprintSeed] = &[
    BlueprintSeed {
        name: "All Staff",
        icon: "ss-users",
        color: "aqua-800",
        kind: "classic",
        description: "Default configuration for employee Macs",
        platforms: &[Platform::Mac],
    },
    BlueprintSeed {
        name: "Engineering",
        icon: "ss-laptop",
        color: "blue-500",
        kind: "map",
        description: "",
        platforms: &[Platform::Mac],
    },
    BlueprintSeed {
        name: "Mobile Fleet",
        icon: "ss-iphone",
        color: "orange-500",
        kind: "classic",
        description: "iPhone and iPad for all staff",
        platforms: &[Platform::IPhone, Platform::IPad, Platform::Vision],
    },
    BlueprintSeed {
        name: "Shared iPads",
        icon: "ss-ipad",
        color: "green-400",
        kind: "classic",
        description: "",
        platforms: &[Platform::IPad],
    },
    BlueprintSeed {
        name: "Conference Rooms",
        icon: "ss-tv",
        color: "purple-600",
        kind: "classic",
        description: "Apple TVs in meeting rooms",
        platforms: &[Platform::AppleTv],
    },
];

#[rustfmt::skip]
/// (name, type, platforms) of library items; a blueprint holds the items of its platforms.
pub static LIBRARY_ITEMS: &[(&str, &str, &[Platform])] = &[
    ("Liftoff", "kandji-setup", &[Platform::Mac]),
    ("Google Chrome", "automatic-app", &[Platform::Mac]),
    ("Slack", "automatic-app", &[Platform::Mac]),
    ("Zoom", "automatic-app", &[Platform::Mac]),
    ("macOS 15 Sequoia", "macos-release", &[Platform::Mac]),
    ("00_rosetta_2", "custom-script", &[Platform::Mac]),
    ("FileVault", "filevault", &[Platform::Mac]),
    ("Wi-Fi - Accuhive Corp", "profile", &[Platform::Mac, Platform::IPhone, Platform::IPad, Platform::AppleTv]),
    ("Passcode", "profile", &[Platform::Mac, Platform::IPhone, Platform::IPad, Platform::Vision]),
    ("Okta Verify", "app-store-app", &[Platform::IPhone, Platform::IPad]),
    ("Microsoft Outlook", "app-store-app", &[Platform::IPhone, Platform::IPad, Platform::Vision]),
    ("iOS 18", "ios-release", &[Platform::IPhone, Platform::IPad]),
    ("Home Screen Layout", "profile", &[Platform::AppleTv]),
    ("Conference Room Display", "profile", &[Platform::AppleTv]),
    ("Threat Security Policy", "threat-security-policy", &[Platform::Mac]),
];

#[rustfmt::skip]
/// Custom Apps of the library (`/library/custom-apps`), also library items of type `custom-app`:
/// (name, uploaded file, install_type, install_enforcement, unzip_location, file_size,
/// show_in_self_service).
pub static CUSTOM_APPS: &[(&str, &str, &str, &str, &str, u64, bool)] = &[
    ("ms_company_portal", "CompanyPortal_5.2310.5-Installer.pkg", "package", "install_once", "", 42_375_997, false),
    ("Accuhive VPN", "AccuhiveVPN-3.4.1.pkg", "package", "continuously_enforce", "", 18_220_544, false),
    ("Sublime Text", "Sublime Text Build 4200.zip", "zip", "no_enforcement", "/Applications", 21_495_808, true),
    ("HP Printer Drivers", "HewlettPackardPrinterDrivers.dmg", "image", "install_once", "", 611_304_448, true),
];

#[rustfmt::skip]
/// Threats the EDR reports (`/threat-details`): (threat_name, classification, file path with
/// `{user}` for a home folder, process_name).
pub static THREATS: &[(&str, &str, &str, &str)] = &[
    ("EICAR-Test-File", "MALWARE", "/Users/{user}/Downloads/eicar.com.txt", "Safari"),
    ("Adload", "MALWARE", "/Users/{user}/Library/Application Support/.mdworker/mdworker_local", "launchd"),
    ("Shlayer", "MALWARE", "/private/var/tmp/Installer.app/Contents/MacOS/Installer", "Installer"),
    ("XCSSET", "MALWARE", "/Users/{user}/Library/Caches/GameKit/xcssetd", "zsh"),
    ("MacKeeper", "PUP", "/Applications/MacKeeper.app/Contents/MacOS/MacKeeper", "Finder"),
    ("Genieo", "PUP", "/Users/{user}/Library/Application Support/Genieo/Genieo", "launchd"),
    ("Advanced Mac Cleaner", "PUP", "/Applications/Advanced Mac Cleaner.app/Contents/MacOS/Advanced Mac Cleaner", "Finder"),
];

#[rustfmt::skip]
/// Apple apps every Mac reports: (name, bundle id, path, version).
pub static MAC_APPLE_APPS: &[(&str, &str, &str, &str)] = &[
    ("Activity Monitor", "com.apple.ActivityMonitor", "/System/Applications/Utilities/Activity Monitor.app", "10.14"),
    ("App Store", "com.apple.AppStore", "/System/Applications/App Store.app", "3.0"),
    ("Calculator", "com.apple.calculator", "/System/Applications/Calculator.app", "10.16"),
    ("Calendar", "com.apple.iCal", "/System/Applications/Calendar.app", "15.0"),
    ("Finder", "com.apple.finder", "/System/Library/CoreServices/Finder.app", "15.5"),
    ("Mail", "com.apple.mail", "/System/Applications/Mail.app", "16.0"),
    ("Safari", "com.apple.Safari", "/Applications/Safari.app", "18.6"),
    ("System Settings", "com.apple.systempreferences", "/System/Applications/System Settings.app", "15.0"),
    ("Terminal", "com.apple.Terminal", "/System/Applications/Utilities/Terminal.app", "2.14"),
    ("TextEdit", "com.apple.TextEdit", "/System/Applications/TextEdit.app", "1.20"),
];

#[rustfmt::skip]
/// Third-party Mac apps, of which each Mac has a subset: (name, bundle id, version, size, source).
pub static MAC_THIRD_PARTY_APPS: &[(&str, &str, &str, &str, &str)] = &[
    ("Google Chrome", "com.google.Chrome", "139.0.7258.155", "1256734120", "Identified Developer"),
    ("Slack", "com.tinyspeck.slackmacgap", "4.45.64", "389442150", "Identified Developer"),
    ("zoom.us", "us.zoom.xos", "6.5.11", "301557312", "Identified Developer"),
    ("Kandji Self Service", "io.kandji.KandjiSelfService", "5.0.3", "95882301", "Identified Developer"),
    ("Microsoft Word", "com.microsoft.Word", "16.100", "2311447552", "App Store"),
    ("Microsoft Excel", "com.microsoft.Excel", "16.100", "2066718720", "App Store"),
    ("1Password", "com.1password.1password", "8.11.4", "431267840", "Identified Developer"),
    ("Visual Studio Code", "com.microsoft.VSCode", "1.103.2", "612331520", "Identified Developer"),
    ("Docker", "com.docker.docker", "4.44.3", "2148737024", "Identified Developer"),
    ("Figma", "com.figma.Desktop", "125.6.5", "397443072", "Identified Developer"),
    ("Okta Verify", "com.okta.mobile.auth-service-extension", "9.52.0", "83886080", "App Store"),
];

/// Managed iOS/iPadOS/visionOS/tvOS apps: (name, bundle id, version, size).
pub static MOBILE_APPS: &[(&str, &str, &str, &str)] = &[
    ("Okta Verify", "com.okta.mobile", "9.52.0", "68390912"),
    ("Slack", "com.tinyspeck.chatlyio", "25.08.10", "291504128"),
    (
        "Microsoft Outlook",
        "com.microsoft.Office.Outlook",
        "4.2534.0",
        "412090368",
    ),
    ("Zoom", "us.zoom.videomeetings", "6.5.10", "171966464"),
    (
        "Google Chrome",
        "com.google.chrome.ios",
        "139.0.7258.76",
        "176947200",
    ),
    (
        "1Password",
        "com.1password.1password",
        "8.11.4",
        "125829120",
    ),
    (
        "Kandji Self Service",
        "io.kandji.selfservice",
        "2.3.0",
        "25165824",
    ),
];

pub static SYSTEM_USERS: &[(&str, &str, &str)] = &[
    ("root", "0", "/var/root"),
    ("daemon", "1", "/var/root"),
    ("_lp", "26", "/var/spool/cups"),
    ("_ard", "67", "/var/empty"),
    ("_www", "70", "/Library/WebServer"),
    ("_mbsetupuser", "248", "/var/setup"),
];
