"""Fixed vocabularies of the synthetic world: categories, title words, user agents."""

from __future__ import annotations

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "news",
    "sports",
    "technology",
    "science",
    "culture",
    "travel",
    "food",
    "music",
    "film",
    "business",
    "health",
    "games",
)

# Title words per category; a title is two words and a number, so titles stay unique-looking.
TITLE_WORDS: dict[str, tuple[str, ...]] = {
    "news": ("Election", "Summit", "Report", "Crisis", "Debate", "Reform", "Vote", "Briefing"),
    "sports": ("Derby", "Final", "Comeback", "Transfer", "Record", "Marathon", "Playoff", "Upset"),
    "technology": ("Chip", "Cloud", "Startup", "Robot", "Update", "Gadget", "Network", "Code"),
    "science": ("Galaxy", "Genome", "Fossil", "Quantum", "Climate", "Particle", "Ocean", "Cell"),
    "culture": ("Museum", "Festival", "Novel", "Gallery", "Poet", "Theatre", "Heritage", "Myth"),
    "travel": ("Island", "Road", "Harbour", "Mountain", "Desert", "City", "Trail", "Coast"),
    "food": ("Recipe", "Bakery", "Spice", "Harvest", "Kitchen", "Feast", "Market", "Noodle"),
    "music": ("Album", "Concert", "Chorus", "Guitar", "Remix", "Tour", "Ballad", "Rhythm"),
    "film": ("Premiere", "Sequel", "Director", "Trailer", "Studio", "Classic", "Scene", "Award"),
    "business": ("Merger", "Market", "Profit", "Founder", "Deal", "Budget", "Shares", "Growth"),
    "health": ("Sleep", "Fitness", "Vaccine", "Diet", "Therapy", "Clinic", "Habit", "Pulse"),
    "games": ("Quest", "Arena", "Puzzle", "Speedrun", "Console", "Guild", "Level", "Boss"),
}
TITLE_ADJECTIVES: tuple[str, ...] = (
    "Hidden",
    "Great",
    "Quiet",
    "Bold",
    "Strange",
    "Golden",
    "Last",
    "New",
    "Secret",
    "Wild",
    "Bright",
    "Lost",
    "Rising",
    "Silent",
    "Open",
    "Final",
)

# (user agent, device) of ordinary browsers.
BROWSERS: tuple[tuple[str, str], ...] = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "desktop",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Safari/605.1.15",
        "desktop",
    ),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "desktop"),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        "mobile",
    ),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Mobile Safari/537.36",
        "mobile",
    ),
    (
        "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.4 Mobile/15E148 Safari/604.1",
        "tablet",
    ),
)
BROWSER_WEIGHTS: tuple[float, ...] = (0.3, 0.12, 0.06, 0.28, 0.18, 0.06)

# Crawlers and scripts: each matches one of Settings.bot_patterns.
BOT_AGENTS: tuple[str, ...] = (
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.31.0",
    "curl/8.4.0",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
)

EXTERNAL_REFERRERS: tuple[str, ...] = (
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://news.ycombinator.com/",
    "https://t.co/",
    "https://www.facebook.com/",
    "-",
)

STATIC_ASSETS: tuple[str, ...] = (
    "/static/app.3f9a1c.js",
    "/static/vendor.77b2e0.js",
    "/static/site.c41d8e.css",
    "/static/fonts/inter.woff2",
    "/favicon.ico",
    "/static/logo.svg",
)
