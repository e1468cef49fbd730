"""Value spaces of the generated fictitious-author facts (data/qa.py): one tuple of distinct strings per kind.

Each kind is big enough to give every author of a realistic set (200 trained + 20 holdout authors, TOFU's size)
its own values, with room left for perturbed answers that no author holds. Books, dates, awards, genres, jobs and
inspirations are composed from parts; cities and languages are real names (languages: ISO 639-2 names).
"""
from __future__ import annotations

import functools

CITIES = tuple("""Abidjan|Accra|Addis Ababa|Adelaide|Aden|Agadir|Ahmedabad|Alexandria|Algiers|Almaty|Amman|Amsterdam|
Anchorage|Ankara|Antwerp|Arequipa|Asmara|Astana|Asuncion|Athens|Auckland|Baghdad|Baku|Bamako|Bandung|Bangalore|
Bangkok|Barcelona|Bari|Basel|Beirut|Belfast|Belgrade|Belo Horizonte|Bergen|Berlin|Bern|Bilbao|Birmingham|Bishkek|
Bologna|Bordeaux|Brasilia|Bratislava|Bremen|Brisbane|Bristol|Brno|Brussels|Bucharest|Budapest|Buenos Aires|Busan|
Cairo|Calgary|Cali|Canberra|Cape Town|Caracas|Cardiff|Cartagena|Casablanca|Chennai|Chicago|Chisinau|Cluj|Colombo|
Constanta|Copenhagen|Cordoba|Cork|Cusco|Dakar|Dalian|Damascus|Darwin|Debrecen|Delhi|Denver|Dhaka|Dijon|Dnipro|Doha|
Dresden|Dubai|Dublin|Dundee|Durban|Dushanbe|Edinburgh|Edmonton|Eindhoven|Erfurt|Esfahan|Faro|Fez|Florence|Fortaleza|
Frankfurt|Freetown|Fukuoka|Gdansk|Geneva|Genoa|Ghent|Glasgow|Gothenburg|Granada|Graz|Guadalajara|Guangzhou|
Guayaquil|Hamburg|Hanoi|Harare|Harbin|Havana|Helsinki|Hiroshima|Hobart|Hue|Hyderabad|Iasi|Innsbruck|Irkutsk|Istanbul|
Izmir|Jaipur|Jakarta|Jeddah|Johannesburg|Kabul|Kampala|Kandy|Karachi|Kathmandu|Kaunas|Kazan|Khartoum|Kigali|Kingston|
Kinshasa|Kobe|Kolkata|Krakow|Kuala Lumpur|Kuching|Kumasi|Kyiv|Kyoto|La Paz|Lagos|Lahore|Leeds|Leipzig|Lille|Lima|
Limassol|Linz|Lisbon|Liverpool|Ljubljana|Lodz|London|Luanda|Lublin|Lusaka|Luxembourg|Lviv|Lyon|Madrid|Malaga|Malmo|
Managua|Manaus|Manchester|Mandalay|Manila|Maputo|Marrakesh|Marseille|Medellin|Melbourne|Mendoza|Milan|Minsk|
Mombasa|Montevideo|Montpellier|Montreal|Moscow|Mumbai|Munich|Muscat|Nagoya|Nairobi|Nantes|Naples|Nice|Nicosia|Odesa|
Osaka|Oslo|Ottawa|Oulu|Oviedo|Padua|Palermo|Panama City|Paris|Patras|Perth|Plovdiv|Porto|Poznan|Prague|Pune|Quebec|
Quito|Rabat|Recife|Reykjavik|Riga|Rio de Janeiro|Riyadh|Rome|Rosario|Rotterdam|Salvador|Salzburg|Samarkand|
San Sebastian|Santiago|Sao Paulo|Sapporo|Sarajevo|Seattle|Sendai|Seoul|Seville|Shanghai|Sibiu|Singapore|Skopje|
Sofia|Split|Stockholm|Strasbourg|Stuttgart|Surabaya|Sydney|Szeged|Tabriz|Taipei|Tallinn|Tampere|Tangier|Tartu|
Tashkent|Tbilisi|Tehran|Thessaloniki|Timisoara|Tirana|Tokyo|Toronto|Toulouse|Trieste|Tripoli|Trondheim|Tunis|Turin|
Turku|Ulaanbaatar|Uppsala|Utrecht|Valencia|Valletta|Valparaiso|Vancouver|Varna|Venice|Verona|Vienna|Vientiane|
Vilnius|Vladivostok|Warsaw|Wellington|Windhoek|Winnipeg|Wroclaw|Xian|Yerevan|Yokohama|Zagreb|Zanzibar|Zaragoza|
Zurich""".replace("\n", "").split("|"))
LANGUAGES = tuple("""Abkhazian Achinese Acoli Adangme Afar Afrikaans Akan Akkadian Albanian Aleut Amharic Angika Arabic
Aragonese Arapaho Arawak Armenian Assamese Avaric Avestan Awadhi Aymara Azerbaijani Balinese Baluchi Bambara Bashkir
Basque Belarusian Bemba Bengali Bhojpuri Bikol Bislama Bosnian Braj Breton Buginese Bulgarian Buriat Burmese Caddo
Cebuano Chagatai Chamorro Chechen Cherokee Cheyenne Chibcha Chinese Choctaw Chuukese Chuvash Coptic Cornish Corsican
Cree Croatian Czech Dakota Danish Dargwa Dinka Dogri Dogrib Duala Dyula Dzongkha Ekajuk Elamite English Erzya Estonian
Ewondo Fanti Faroese Fijian Finnish French Friulian Fulah Galician Ganda Gayo Gbaya Georgian German Gilbertese Gondi
Gorontalo Grebo Guarani Gujarati Haida Hausa Hawaiian Hebrew Herero Hiligaynon Hindi Hittite Hungarian Icelandic Igbo
Iloko Indonesian Ingush Inuktitut Inupiaq Irish Italian Japanese Javanese Kabardian Kabyle Kamba Kannada Kanuri
Karelian Kashmiri Kashubian Kazakh Khasi Kimbundu Kinyarwanda Kongo Konkani Korean Kosraean Kpelle Kumyk Kurdish Kurukh
Kutenai Ladino Lahnda Lamba Latin Latvian Lezghian Lingala Lithuanian Luiseno Lunda Lushai Macedonian Madurese Magahi
Maithili Makasar Malagasy Malay Malayalam Maltese Manchu Mandar Mandingo Manipuri Manx Maori Marathi Marshallese
Marwari Masai Mende Minangkabau Mirandese Mohawk Moksha Mongolian Montenegrin Mossi Ndonga Neapolitan Nepali Niuean
Nogai Norwegian Nyamwezi Nyankole Nyoro Nzima Ojibwa Oriya Oromo Osage Pahlavi Palauan Pali Pangasinan Papiamento
Persian Phoenician Pohnpeian Polish Portuguese Quechua Rajasthani Rapanui Romansh Romany Rundi Russian Samoan Sandawe
Sango Sanskrit Santali Sardinian Sasak Selkup Serbian Shona Sicilian Sidamo Siksika Sindhi Slovak Slovenian Sogdian
Somali Soninke Sukuma Sumerian Sundanese Swahili Swati Swedish Syriac Tagalog Tahitian Tajik Tamashek Tamil Tatar
Telugu Tereno Tetum Thai Tibetan Tigre Tigrinya Timne Tlingit Tsimshian Tsonga Tswana Tumbuka Turkish Turkmen Tuvinian
Twi Udmurt Ugaritic Ukrainian Umbundu Urdu Uzbek Venda Vietnamese Votic Walamo Walloon Waray Washo Welsh Wolof Xhosa
Yakut Yapese Yiddish Yoruba Zapotec Zenaga Zulu Zuni""".split())
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
_GENRE_MODS = ("urban", "rural", "maritime", "psychological", "political", "historical", "comic", "cosmic", "domestic",
               "pastoral", "philosophical", "epistolary", "surreal", "tropical", "arctic", "industrial", "mythic",
               "military", "courtroom", "culinary")
_GENRE_BASES = ("mystery", "fantasy", "horror", "romance", "satire", "thriller", "crime fiction", "war fiction",
                "adventure", "fable", "saga", "drama", "noir", "tragedy", "science fiction")
_AWARD_A = ("Silver", "Golden", "Amber", "Crimson", "Azure", "Ivory", "Copper", "Iron", "Jade", "Scarlet", "Emerald",
            "Onyx", "Pearl", "Cobalt", "Bronze", "Violet", "Northern", "Southern", "Eastern", "Western")
_AWARD_B = ("Quill", "Lantern", "Heron", "Key", "Page", "Compass", "Anchor", "Star", "Oak", "Falcon", "Crown", "Harbor",
            "Meridian", "Willow", "Beacon", "Sparrow", "Ink", "Tower", "River", "Candle")
_AWARD_KIND = ("Prize", "Award", "Medal")
_JOBS = ("baker", "surgeon", "carpenter", "librarian", "fisherman", "pilot", "pharmacist", "architect", "tailor",
         "electrician", "veterinarian", "journalist", "mechanic", "florist", "astronomer", "nurse", "photographer",
         "chef", "geologist", "teacher", "lawyer", "plumber", "translator", "farmer", "blacksmith", "potter",
         "jeweller", "cobbler", "glassblower", "locksmith", "beekeeper", "shepherd", "sculptor", "violinist",
         "dentist", "midwife", "surveyor", "bookbinder", "watchmaker", "stonemason", "cartographer", "economist",
         "botanist", "diplomat", "firefighter", "lighthouse keeper", "optician", "printer", "saddler", "weaver")
_JOB_FIELDS = ("marine", "railway", "museum", "hospital", "harbour", "customs", "postal", "textile", "mining",
               "forestry", "aviation", "school", "theatre", "wine", "dairy", "bridge", "radio", "garden", "river",
               "court")
_JOB_ROLES = ("engineer", "inspector", "clerk", "technician", "manager", "supervisor", "consultant", "guard", "chemist",
              "accountant", "historian", "officer", "planner", "archivist", "statistician", "electrician", "surveyor",
              "photographer", "translator", "carpenter")
_BOOK_ADJ = ("Silent", "Crimson", "Hollow", "Distant", "Burning", "Forgotten", "Velvet", "Broken", "Hidden",
             "Shattered", "Quiet", "Endless", "Northern", "Paper", "Glass", "Winter", "Iron", "Lonely", "Salt",
             "Golden", "Drowned", "Secret", "Last", "Wandering", "Sleeping", "Painted", "Frozen", "Wild", "Midnight",
             "Borrowed")
_BOOK_NOUN = ("Harbor", "Orchard", "Lantern", "Compass", "Garden", "Tide", "Archive", "Bridge", "Mirror", "Meadow",
              "Clockmaker", "Lighthouse", "Cartographer", "River", "Signal", "Atlas", "Ember", "Well", "Island",
              "Violin", "Ferry", "Balcony", "Kingdom", "Telegram", "Orchid", "Summer", "Cathedral", "Shepherd",
              "Quarry", "Letters")
_INSP_THINGS = ("old maps", "folk songs", "letters", "family diaries", "long train journeys", "night walks",
                "market stalls", "games of chess", "sailors' stories", "radio plays", "village legends", "silent films",
                "abandoned houses", "bird migrations", "courtroom trials", "kitchen conversations", "mountain storms",
                "second-hand bookshops", "star charts", "lullabies")
_INSP_CONTEXTS = ("from childhood", "during a year abroad", "after university", "in a small harbour town",
                  "in the mountains", "at a grandparent's house", "during a long illness", "on night shifts",
                  "in a boarding school", "during a war", "in a crowded city", "on a remote island",
                  "in a family bakery", "during summer holidays", "in a provincial library")


def _compose(*parts: tuple[str, ...], sep: str = " ", prefix: str = "") -> tuple[str, ...]:
    out = [""]
    for part in parts:
        out = [f"{a}{sep if a else ''}{b}" for a in out for b in part]
    return tuple(prefix + x for x in out)


@functools.cache
def value_space(kind: str) -> tuple[str, ...]:
    """Every value of `kind` (city, date, genre, award, job, book, lang, inspiration), distinct, in a fixed order."""
    spaces = {
        "city": lambda: CITIES,
        "date": lambda: tuple(f"{m} {d}, {y}" for y in range(1931, 1996) for m in MONTHS for d in range(1, 29)),
        "genre": lambda: _compose(_GENRE_MODS, _GENRE_BASES),
        "award": lambda: _compose(_AWARD_A, _AWARD_B, _AWARD_KIND),
        "job": lambda: _JOBS + _compose(_JOB_FIELDS, _JOB_ROLES),
        "book": lambda: _compose(_BOOK_ADJ, _BOOK_NOUN, prefix="The "),
        "lang": lambda: LANGUAGES,
        "inspiration": lambda: _compose(_INSP_THINGS, _INSP_CONTEXTS),
    }
    return spaces[kind]()


__all__ = ["value_space", "CITIES", "LANGUAGES", "MONTHS"]
