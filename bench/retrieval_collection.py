"""A realistic retrieval benchmark: a folder of everyday files and the queries people would type to find them.

    .venv/bin/python bench/retrieval_collection.py OUT_DIR [--seed 19] [--scale 1.0]

`build_collection(folder, seed, scale)` writes, at scale 1.0 (each count is multiplied by `scale`, with at least
one file of every kind left):

- photos/       300 JPEGs: crops, resizes (0.3-3 Mpx), tone changes, mirror images and near-duplicates of the
                photographs bundled with scikit-image (only those that load offline). 14 show something a person
                would describe (an astronaut, a cat, a cup of coffee...); 7 (gravel, a colour wheel, handwriting, a
                blurred clock...) are there only as distractors.
- scans/        300 PNGs rendered by tests/docs.py (turned, blurred, noisy): invoices, shop receipts, recipes,
                letters, bus/tram/ferry timetables, building notices, appointment cards, parking tickets and
                hotel booking confirmations.
- recordings/   150 WAVs (16 kHz mono 16-bit, 3-12 s) spoken by espeak-ng in three accents at 130-160 words a
                minute: reminders to self, voicemails, meeting memos and messages to family and friends.
- notes/        310 .txt/.md files: shopping and to-do lists, meeting minutes, diary entries, book notes, travel
                plans, recipes, online orders and car records.

and 158 queries, each with the files that answer it ("relevant"):

- ocr / transcript / note: a paraphrased question about one scan / recording / note ("how long does the lemon
  sponge bake" for a card saying "Bake at 180 C for 40 minutes"), specific enough that the other documents of its
  kind (another invoice from the same supplier, the same bus route on another day) do not answer it. A few
  documents exist twice on purpose, a recipe as a scan and as a typed note, a meeting as a voice memo and as typed
  minutes: their queries name both files, and take the kind of the harder one (ocr, transcript).
- picture: a description of one source photograph; every variant of that photograph is relevant.
- keyword: an identifier pasted as it is written (an invoice number, a booking reference, a licence plate, an
  order code, a policy number); every file holding it is relevant (a plate can be on a car note and on a ticket).
- none: a plausible query that no file answers (relevant is empty).

Every document is filled in from templates, so its facts are known: a query is written from one document's facts,
with conditions on those facts, and its relevant files are all the documents whose facts meet the conditions. A
query is kept only if that set is exactly the file(s) it was written for, and if it copies no five consecutive
words of any file's text. Everything follows from `seed`; the file list, the queries, the seed and the scale go
to .collection.json (hidden, so that indexing the folder leaves it out), which a later call with the same seed
and scale returns instead of building again.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The repository's own "scan" renderer, shared with the OCR tests (as tests.docs: the top-level docs/ folder would
# shadow a bare `docs`).
from tests.docs import render  # noqa: E402

GENERATOR_VERSION = 1  # stored in .collection.json: bump it when the templates change, so older builds are rebuilt
MANIFEST = ".collection.json"  # hidden: the folder walker skips it, so the index never takes it for a note
YEAR = 2026

# Files per topic at scale 1.0. Twins (the same recipe or meeting in a second format) are counted in both folders.
SCAN_COUNTS = {"invoice": 60, "receipt": 40, "recipe": 36, "letter": 44, "timetable": 30, "notice": 30,
               "appointment": 30, "parking-ticket": 15, "booking": 15}
RECORDING_COUNTS = {"reminder": 45, "voicemail": 45, "meeting": 25, "message": 35}
NOTE_COUNTS = {"shopping": 45, "todo": 45, "minutes": 40, "diary": 45, "book-notes": 40, "travel": 35,
               "recipe": 20, "orders": 25, "car": 15}
PHOTO_COUNT = 300
TWIN_COUNTS = {"recipe": 4, "meeting": 3}
QUERY_COUNTS = {"ocr": 40, "transcript": 30, "picture": 22, "note": 34, "keyword": 14, "none": 18}

# ---------------------------------------------------------------------------------------------- shared vocabulary

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
FIRST_NAMES = ["Amira", "Ben", "Carla", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Keiko",
               "Liam", "Maya", "Nadia", "Oscar", "Priya", "Rosa", "Samir", "Tessa", "Umar", "Vera", "Yara", "Zoe",
               "Marta", "Felix", "Hannah", "Ivan", "Leila", "Noah", "Olga", "Pablo", "Ruth", "Theo", "Wanda",
               "Isaac", "Chloe", "Rahul", "Astrid", "Declan", "Mei"]
SURNAMES = ["Thompson", "Alvarez", "Okafor", "Lindqvist", "Brennan", "Castellano", "Nakamura", "Dubois", "Walker",
            "Marques", "Jansen", "Haddad", "Becker", "Fletcher", "Novak", "Moreau", "Kowalski", "Reyes", "Patel",
            "Sato", "Murphy", "Varga", "Olsen", "Ferreira", "Kaplan", "Ahmed", "Lund", "Romero", "Weber", "Quinn"]
STREETS = ["Elm Street", "Mill Road", "Station Approach", "Queen's Parade", "Victoria Road", "Church Lane",
           "Harbour Walk", "Albert Street", "Park Crescent", "High Street", "Bridge Street", "Castle Street",
           "Orchard Way", "King Street", "Market Lane", "Chapel Row", "Bath Road", "Green Lane", "Canal Street",
           "Union Street"]
HOTELS = ["Hotel Aurora", "Hotel Belvedere", "Casa Azul", "Hotel Continental", "Hotel Miramar", "Parkview Hotel",
          "Hotel Sole", "Grand Central Hotel", "Hotel Lindenhof", "The Harbour Inn", "Hotel Flora", "Riverside Lodge"]

# ------------------------------------------------------------------------------------------------- photographs

# (file stem, scikit-image loader, how a person would describe the picture). The undescribed ones are
# distractors: a search for anything may wrongly find them, nothing should rightly find them.
PHOTO_SOURCES = [
    ("astronaut", "astronaut", ["smiling astronaut in an orange spacesuit",
                                "woman astronaut next to the american flag and a space shuttle model"]),
    ("cat", "chelsea", ["close-up of a tabby cat with green eyes", "striped cat looking straight at me"]),
    ("coffee", "coffee", ["a cup of coffee on a red saucer", "espresso with a little spoon on a wooden table"]),
    ("rocket", "rocket", ["rocket on the launch pad at dusk", "launch towers lit up under a deep blue sky"]),
    ("motorcycle", "stereo_motorcycle", ["red motorbike parked in a garage",
                                         "motorcycle in a workshop with shelves of boxes behind it"]),
    ("cameraman", "camera", ["man filming with a camera on a tripod",
                             "black and white picture of a photographer in a long coat"]),
    ("coins", "coins", ["old coins laid out in rows", "collection of ancient silver coins"]),
    ("moon", "moon", ["grey cratered surface of the moon"]),
    ("galaxies", "hubble_deep_field", ["deep space picture full of tiny galaxies",
                                       "black sky with thousands of colourful stars"]),
    ("bricks", "brick", ["a wall of grey bricks"]),
    ("lawn", "grass", ["close-up of the grass on a lawn"]),
    ("retina", "retina", ["photo of the back of an eye with red blood vessels"]),
    ("tissue", "immunohistochemistry", ["stained tissue seen under a microscope"]),
    ("horse", "horse", ["black silhouette of a horse"]),
    ("gravel", "gravel", []),
    ("colour-wheel", "colorwheel", []),
    ("logo", "logo", []),
    ("book-page", "page", []),
    ("handwriting", "text", []),
    ("blurred-clock", "clock", []),
    ("cell", "cell", []),
]

# ------------------------------------------------------------------------------------------------ scan vocabulary

# Each supplier sells from its own catalogue, so its invoices share items: (as printed, as a person says it).
SUPPLIERS = {
    "Harbor Supplies Ltd": [("Steel brackets", "metal brackets"), ("Wood screws", "screws"), ("Door hinges", "hinges"),
                            ("Wall plugs", "rawl plugs"), ("Cable ties", "zip ties"), ("Drill bits", "drill bits"),
                            ("Padlocks", "padlocks"), ("Sandpaper sheets", "sandpaper")],
    "Summit Office Store": [("Printer paper A4", "printer paper"), ("Toner cartridge", "toner"),
                            ("Ring binders", "folders"), ("Desk lamp", "desk light"),
                            ("Whiteboard markers", "whiteboard pens"), ("Office chair", "office chair"),
                            ("Sticky notes", "post-it notes"), ("Filing cabinet", "filing cabinet")],
    "Cedar Garden Centre": [("Garden hose 25 m", "hosepipe"), ("Compost 50 L", "compost"),
                            ("Rose bushes", "roses"), ("Terracotta pots", "clay plant pots"),
                            ("Lawn seed", "grass seed"), ("Pruning shears", "secateurs"),
                            ("Bird feeder", "bird feeder"), ("Raised bed kit", "raised bed")],
    "Brightwater Plumbing": [("Copper pipe 15 mm", "copper pipe"), ("Radiator valve", "radiator valve"),
                             ("Mixer tap", "kitchen tap"), ("Boiler service", "boiler service"),
                             ("Shower head", "shower head"), ("Pipe insulation", "pipe lagging"),
                             ("Sink trap", "sink trap"), ("Call-out fee", "call out charge")],
    "Kestrel Electrical": [("LED bulbs", "light bulbs"), ("Extension lead", "extension cable"),
                           ("Smoke alarm", "smoke detector"), ("Light switch", "light switch"),
                           ("Outdoor socket", "outside socket"), ("Ceiling fan", "ceiling fan"),
                           ("Fuse box check", "fuse box inspection"), ("Doorbell camera", "video doorbell")],
    "Castle Print Works": [("Business cards", "business cards"), ("A3 posters", "posters"),
                           ("Flyers x 1000", "leaflets"), ("Vinyl banner 2 m", "banner"),
                           ("Letterheads", "headed paper"), ("Menu cards", "menus"), ("Booklets", "booklets"),
                           ("Stickers", "stickers")],
    "Redstone Timber Yard": [("Oak boards", "oak planks"), ("Pine battens", "pine battens"),
                             ("Plywood sheets", "plywood"), ("Fence panels", "fence panels"),
                             ("Decking boards", "decking"), ("Fence posts", "fence posts"),
                             ("Wood stain", "wood stain"), ("MDF sheets", "mdf board")],
    "Meridian Paints": [("White emulsion 10 L", "white paint"), ("Masking tape", "masking tape"),
                        ("Paint rollers", "rollers"), ("Primer 5 L", "primer"), ("Gloss paint", "gloss"),
                        ("Dust sheets", "dust sheets"), ("Filler", "wall filler"), ("Brush set", "paint brushes")],
    "Lakeside Catering": [("Buffet lunch x 20", "buffet lunch"), ("Coffee urn hire", "coffee urn"),
                          ("Sandwich platters", "sandwiches"), ("Fruit platters", "fruit"),
                          ("Celebration cake", "celebration cake"), ("Waiting staff", "waiters"),
                          ("Glassware hire", "glasses"), ("Canapes", "canapes")],
    "Copperfield Cleaning": [("Office cleaning", "office cleaning"), ("Window cleaning", "window cleaning"),
                             ("Carpet shampoo", "carpet cleaning"), ("Oven clean", "oven cleaning"),
                             ("Kitchen deep clean", "deep clean of the kitchen"),
                             ("Gutter clearing", "gutter clearing"), ("Patio pressure wash", "patio jet wash"),
                             ("End of tenancy clean", "move-out clean")],
}
CUSTOMERS = ["Bay Street Dental", "Maple Leaf Nursery", "Orchard Lane School", "Riverside Bakery",
             "Northgate Library", "Greenway Cafe", "Fox & Hound Pub", "Hilltop Vets", "Union Yoga Studio",
             "Clearwater Hotel"]

# (name on the receipt, what a person calls the shop, its shelves)
SHOPS = [
    ("FRESHWAY SUPERMARKET", "the supermarket",
     [("Oat milk 1L", "oat milk"), ("Sourdough loaf", "sourdough bread"), ("Bananas", "bananas"),
      ("Cheddar 400g", "cheddar cheese"), ("Coffee beans", "coffee beans"), ("Free range eggs", "eggs"),
      ("Basmati rice", "rice"), ("Greek yogurt", "yoghurt")]),
    ("CORNER PHARMACY", "the chemist",
     [("Sun cream SPF50", "sunscreen"), ("Plasters", "plasters"), ("Cough syrup", "cough medicine"),
      ("Ibuprofen 200mg", "painkillers"), ("Toothpaste", "toothpaste"), ("Vitamin D", "vitamin d"),
      ("Hand cream", "hand cream"), ("Thermometer", "thermometer")]),
    ("BEAN THERE CAFE", "the cafe",
     [("Flat white", "flat white"), ("Almond croissant", "croissant"), ("Chai latte", "chai"),
      ("Cheese toastie", "toastie"), ("Banana bread", "banana bread"), ("Hot chocolate", "hot chocolate"),
      ("Orange juice", "orange juice"), ("Bagel", "bagel")]),
    ("CITY HARDWARE", "the hardware shop",
     [("Paint brush", "paintbrush"), ("Light bulb E27", "bulb"), ("Batteries AA x8", "batteries"),
      ("Picture hooks", "picture hooks"), ("Superglue", "glue"), ("Tape measure", "tape measure"),
      ("Door mat", "doormat"), ("Torch", "torch")]),
    ("PAGE TURNER BOOKS", "the bookshop",
     [("Road atlas", "road atlas"), ("Notebook", "notebook"), ("Birthday card", "card"),
      ("Wrapping paper", "wrapping paper"), ("Crossword book", "crosswords"), ("Picture book", "kids book"),
      ("Cookbook", "cookbook"), ("Wall calendar", "calendar")]),
    ("PETALS FLORIST", "the florist",
     [("Tulips", "tulips"), ("Red roses", "roses"), ("Lilies", "lilies"), ("Orchid in pot", "orchid"),
      ("Eucalyptus", "eucalyptus"), ("Peonies", "peonies"), ("Glass vase", "vase"), ("Gift wrap", "gift wrap")]),
]

# Sweet recipes are a flavour on a base, so a lemon cake has a lemon tart and an orange cake as near neighbours.
FLAVOURS = {"Lemon": "2 lemons, zest and juice", "Orange": "1 orange, zested", "Chocolate": "100 g dark chocolate",
            "Ginger": "2 tsp ground ginger", "Apple": "3 apples, sliced", "Banana": "3 ripe bananas",
            "Carrot": "2 carrots, grated", "Coconut": "80 g desiccated coconut", "Almond": "100 g ground almonds",
            "Cherry": "200 g cherries, pitted", "Blueberry": "150 g blueberries", "Raspberry": "150 g raspberries"}
# base: (what a person calls it, ingredients, oven temperatures, minutes in the oven)
SWEET_BASES = {
    "Cake": (["sponge", "cake"], ["200 g self-raising flour", "150 g butter", "150 g caster sugar", "3 eggs"],
             (170, 180), (35, 50)),
    "Muffins": (["muffins"], ["250 g plain flour", "2 tsp baking powder", "100 g sugar", "200 ml milk"],
                (190, 200), (18, 25)),
    "Loaf": (["loaf cake", "loaf"], ["225 g plain flour", "100 g butter", "120 g brown sugar", "2 eggs"],
             (160, 170), (50, 65)),
    "Cookies": (["biscuits", "cookies"], ["180 g plain flour", "120 g soft butter", "80 g sugar", "1 egg yolk"],
                (180, 190), (10, 14)),
    "Tart": (["tart"], ["1 sheet shortcrust pastry", "3 eggs", "100 g sugar", "150 ml double cream"],
             (170, 180), (25, 35)),
    "Crumble": (["crumble"], ["150 g plain flour", "100 g cold butter", "75 g demerara sugar", "40 g oats"],
                (180, 190), (30, 40)),
}
# (name, what a person calls it, how it cooks, oven temperature or None, ingredients)
SAVOURY_DISHES = [
    ("Tomato and Basil Soup", "tomato soup", "simmer", None, ["800 g tomatoes", "1 onion", "a handful of basil"]),
    ("Spiced Lentil Stew", "lentil stew", "simmer", None, ["250 g red lentils", "1 tsp cumin", "1 tin tomatoes"]),
    ("Mushroom Risotto", "mushroom risotto", "simmer", None, ["300 g arborio rice", "250 g mushrooms", "1 L stock"]),
    ("Chickpea Curry", "chickpea curry", "simmer", None,
     ["2 tins chickpeas", "1 tin coconut milk", "2 tbsp curry paste"]),
    ("Roast Chicken with Herbs", "roast chicken", "roast", 200, ["1 whole chicken", "1 lemon", "fresh thyme"]),
    ("Leek and Potato Soup", "leek soup", "simmer", None, ["3 leeks", "500 g potatoes", "1 L stock"]),
    ("Pumpkin Soup", "pumpkin soup", "simmer", None, ["1 kg pumpkin", "1 onion", "100 ml cream"]),
    ("Beef Chilli", "chilli con carne", "simmer", None, ["500 g beef mince", "1 tin kidney beans", "2 tsp chilli"]),
    ("Vegetable Lasagne", "veggie lasagne", "bake", 190, ["12 lasagne sheets", "2 courgettes", "500 ml white sauce"]),
    ("Fish Pie", "fish pie", "bake", 200, ["600 g white fish", "1 kg potatoes", "200 g prawns"]),
    ("Shepherd's Pie", "shepherds pie", "bake", 200, ["500 g lamb mince", "1 kg potatoes", "2 carrots"]),
    ("Pea and Mint Risotto", "pea risotto", "simmer", None, ["300 g arborio rice", "300 g peas", "fresh mint"]),
    ("Thai Green Curry", "green curry", "simmer", None,
     ["2 tbsp green curry paste", "400 ml coconut milk", "1 aubergine"]),
    ("Cauliflower Cheese", "cauliflower cheese", "bake", 190, ["1 cauliflower", "150 g cheddar", "500 ml milk"]),
    ("Sweet Potato Curry", "sweet potato curry", "simmer", None, ["3 sweet potatoes", "1 tin tomatoes", "spinach"]),
    ("Chicken Noodle Soup", "chicken soup", "simmer", None, ["2 chicken thighs", "100 g egg noodles", "1 L stock"]),
    ("Lamb Tagine", "tagine", "simmer", None, ["600 g lamb shoulder", "100 g dried apricots", "2 tsp ras el hanout"]),
    ("Stuffed Peppers", "stuffed peppers", "bake", 180, ["4 red peppers", "150 g couscous", "100 g feta"]),
    ("Baked Salmon Parcels", "salmon parcels", "bake", 200, ["4 salmon fillets", "1 lemon", "fresh dill"]),
    ("Mushroom Stroganoff", "stroganoff", "simmer", None, ["400 g mushrooms", "150 ml soured cream", "1 tsp paprika"]),
]
RECIPE_TIPS = ["Use a little less sugar next time.", "Freezes well for a month.", "The kids loved it.",
               "Double it for a party.", "Better the next day.", "Swap the butter for oil if needed."]

# Letter subjects, each with the slot that tells two letters of the same subject apart.
SCHOOL_TRIPS = [("Science Museum", "science museum"), ("Botanical Gardens", "botanic garden"),
                ("Sea Life Centre", "aquarium"), ("Roman Villa", "roman villa"), ("Planetarium", "planetarium"),
                ("City Farm", "city farm"), ("Castle Museum", "castle"), ("Chocolate Factory", "chocolate factory"),
                ("Fire Station", "fire station"), ("Nature Reserve", "nature reserve")]
INSURANCE_TYPES = ["home", "car", "travel", "pet", "contents", "bicycle", "caravan", "phone"]
JOB_ROLES = [("Data Analyst", "data analyst"), ("Staff Nurse", "nursing"), ("Warehouse Supervisor", "warehouse"),
             ("Graphic Designer", "graphic design"), ("Sous Chef", "chef"), ("School Librarian", "librarian"),
             ("Bus Driver", "bus driver"), ("Lab Technician", "lab technician"),
             ("Web Developer", "web developer"), ("Sales Assistant", "sales assistant")]
EMPLOYERS = ["Northwind Traders", "Bluebell Care Homes", "Atlas Logistics", "Greenline Energy", "Harbour Hospital",
             "Quayside Hotel Group"]
CLUBS = [("Oakwood Tennis Club", "tennis club"), ("Riverside Rowing Club", "rowing club"),
         ("Kings Chess Club", "chess club"), ("Aqua Swim Club", "swimming club"),
         ("Peak Climbing Wall", "climbing gym"), ("Velo Cycling Club", "cycling club"),
         ("Greenside Golf Club", "golf club"), ("Harbour Sailing Club", "sailing club")]
BINS = [("green", "garden waste"), ("blue", "recycling"), ("brown", "food waste"), ("black", "general rubbish"),
        ("grey", "glass bottles and jars"), ("purple", "paper and card")]
FURNITURE = [("oak dining table", "dining table"), ("sofa bed", "sofa bed"), ("washing machine", "washer"),
             ("bookcase", "bookshelf"), ("wardrobe", "wardrobe"), ("garden bench", "garden bench"),
             ("fridge freezer", "fridge"), ("double mattress", "mattress"), ("desk chair", "desk chair")]
FURNITURE_SHOPS = ["Oak & Ash Furniture", "HomeStore Direct", "Nordic Living"]
LIBRARY_BOOKS = [("A Short History of Bridges", "book about bridges"), ("The Mushroom Forager", "mushroom book"),
                 ("Learn Spanish in 30 Days", "spanish course book"), ("The Complete Bread Book", "bread book"),
                 ("Birds of the Coast", "bird guide"), ("Fixing Old Bicycles", "bike repair manual"),
                 ("Stargazing for Beginners", "astronomy book"), ("The Knitting Handbook", "knitting book")]
FLATS = ["1A", "2B", "3C", "4D", "5A", "6B", "7C", "8D", "9A", "10B", "11C", "12D"]

# (mode as printed, as said, route numbers); each route has fixed stops, and a timetable per day type.
TRANSIT = [("BUS", "bus", [4, 7, 12, 18, 21, 33, 42, 56, 61, 77, 85, 90]), ("TRAM", "tram", [1, 2, 3]),
           ("FERRY", "ferry", [5, 9])]
DAY_TYPES = {"Mondays to Fridays": ["weekdays", "on a weekday"], "Saturdays": ["saturday", "on saturdays"],
             "Sundays and holidays": ["sunday", "on bank holidays"]}
STOPS = ["Harbour", "Market Square", "University", "North Station", "Old Town", "Hospital", "Riverside Park",
         "Stadium", "Airport", "Museum Quarter", "Castle Hill", "Westgate", "Retail Park", "Zoo", "Beach Road",
         "Ferry Terminal"]

BUILDINGS = ["Linden Court", "Maple House", "Block C", "Harbour View Flats", "Elm Tower", "Riverside Mews",
             "Kingfisher House", "Block A"]
NOTICE_TYPES = ["lift", "water", "fire alarm", "party", "car park"]
LOST_CATS = ["Milo", "Luna", "Pepper", "Biscuit", "Shadow", "Mochi", "Tigger", "Smudge"]
CAT_COATS = ["grey tabby", "black and white", "ginger", "tortoiseshell", "white", "black"]

# (as printed on the card, as a person says it, the practice)
APPOINTMENTS = [("Dental check-up", "dentist appointment", "Riverside Dental Practice"),
                ("Eye test", "optician appointment", "ClearSight Opticians"),
                ("Physiotherapy", "physio session", "Active Physio Clinic"),
                ("Blood test", "blood test", "Parkside Surgery"),
                ("Hearing test", "hearing check", "SoundCare Audiology"),
                ("Flu vaccination", "flu jab", "Parkside Surgery"),
                ("Dermatology clinic", "skin doctor appointment", "City Hospital"),
                ("Cut and colour", "hair appointment", "Studio Nine Salon")]
PARKING_REASONS = ["Parked on double yellow lines", "Parked in a loading bay", "No valid pay and display ticket",
                   "Parked in a resident bay", "Stayed over the time limit"]
BOOKING_CITIES = ["Porto", "Seville", "Bruges", "Salzburg", "Krakow", "Ljubljana", "Bologna", "Ghent", "Lyon",
                  "Valencia", "Tallinn", "Dubrovnik", "Innsbruck", "Bordeaux", "Gdansk", "Split"]
ROOMS = ["Double room", "Twin room", "Family room", "Single room", "Junior suite"]

# ------------------------------------------------------------------------------------------ recording vocabulary

VOICES = ["en-us", "en-gb", "en"]
TOOLS = [("ladder", "ladder"), ("drill", "drill"), ("lawn mower", "lawnmower"), ("hedge trimmer", "hedge cutter"),
         ("pressure washer", "jet washer"), ("wheelbarrow", "wheelbarrow")]
GIFTS = ["a cookery book", "some gardening gloves", "a nice scarf", "a jigsaw puzzle", "concert tickets",
         "a good bottle of olive oil"]
BILLS = [("water", "water bill"), ("council tax", "council tax"), ("phone", "phone bill"),
         ("electricity", "electric bill"), ("gas", "gas bill"), ("broadband", "internet bill")]
PICKUPS = [("suit from the dry cleaners", "dry cleaning"), ("watch from the jeweller", "repaired watch"),
           ("new glasses from the optician", "new glasses"), ("photo prints from the camera shop", "printed photos"),
           ("spare keys from the key cutter", "key copies"), ("bike from the repair shop", "bicycle"),
           ("parcel from the post office", "parcel")]
GARAGES = ["Millbrook Motors", "Apex Autos", "Fairway Garage", "Station Road Garage"]
REPAIRS = [("new brakes", "brakes"), ("new clutch", "clutch"), ("two new tyres", "tyres"),
           ("exhaust repair", "exhaust"), ("new battery", "battery"), ("timing belt", "cam belt")]
RESTAURANTS = ["Luigi's", "the Golden Dragon", "Spice Garden", "Casa Lola", "the Olive Tree", "Sakura Sushi",
               "the Blue Anchor", "Le Petit Bistro"]
FIXTURES = [("boiler", "boiler"), ("kitchen tap", "dripping tap"), ("shower", "shower"),
            ("radiator in the hall", "hall radiator"), ("toilet cistern", "toilet"),
            ("washing machine pipe", "leak under the washing machine")]
AGENCIES = ["Keys and Co", "Hartley Homes", "Parkside Lettings"]
VET_PETS = [("Bella", "rabbit"), ("Charlie", "cat"), ("Poppy", "guinea pig"), ("Rocky", "tortoise"),
            ("Daisy", "cat"), ("Kiwi", "parrot")]
DINNER_DISHES = ["salad", "dessert", "bread", "wine", "cheese board", "fruit"]
CLUBS_FOR_KIDS = [("football practice", "football"), ("swimming", "swimming lessons"), ("drama club", "drama"),
                  ("art class", "art"), ("scouts", "scouts"), ("judo", "judo")]
KEY_SPOTS = ["blue flowerpot", "doormat", "garden gnome", "loose brick by the door", "bench in the garden"]
COTTAGE_PLACES = ["Cornwall", "the Lake District", "Pembrokeshire", "Norfolk", "the Peak District",
                  "Northumberland", "Devon", "the Cotswolds"]

# Meetings (voice memos and typed minutes draw from one deck): a product and what the meeting was about.
PRODUCTS = [("website", "web site"), ("mobile app", "phone app"), ("spring catalogue", "catalogue"),
            ("newsletter", "mailing list"), ("loyalty card", "rewards card"), ("delivery service", "home delivery"),
            ("coffee range", "coffee products"), ("garden range", "garden products"),
            ("booking system", "reservations system"), ("customer helpline", "support line"),
            ("summer sale", "summer discounts"), ("trade fair stand", "trade show booth"),
            ("staff intranet", "internal site"), ("product labels", "packaging labels")]
MEETING_KINDS = ["launch", "budget", "review", "redesign", "kick-off"]
DECISIONS = ["move the deadline to the end of the month", "hire a freelance designer", "cut the budget by ten percent",
             "run a small pilot first", "ask twenty customers for feedback", "switch to a cheaper supplier",
             "wait until after the summer", "meet every Monday until it is done"]
# (what the memo says, how a person asks who does it)
ACTIONS = [("send round the draft", "who is sending out the draft"), ("book the venue", "who is booking the room"),
           ("update the spreadsheet", "who updates the numbers"), ("call the printer", "who is phoning the printers"),
           ("write the brief", "who is writing the brief"), ("collect three quotes", "who is getting quotes")]

# -------------------------------------------------------------------------------------------- note vocabulary

OCCASIONS = {
    "barbecue": ("bbq", ["sausages", "burger buns", "corn on the cob", "charcoal", "coleslaw", "ketchup"]),
    "camping trip": ("camping weekend", ["tent pegs", "marshmallows", "instant noodles", "gas canister",
                                         "insect repellent", "torch batteries"]),
    "picnic": ("picnic", ["scotch eggs", "strawberries", "lemonade", "crisps", "paper plates", "cherry tomatoes"]),
    "Sunday roast": ("roast dinner", ["beef joint", "potatoes", "carrots", "gravy granules", "yorkshire puddings",
                                      "horseradish"]),
    "movie night": ("film night", ["popcorn", "chocolate buttons", "fizzy drinks", "tortilla chips", "salsa dip"]),
    "Christmas dinner": ("xmas dinner", ["turkey", "sprouts", "cranberry sauce", "stuffing", "mince pies",
                                         "crackers"]),
    "pancake morning": ("pancake breakfast", ["flour", "milk", "lemons", "maple syrup", "blueberries"]),
    "packed lunches": ("school lunches", ["wraps", "hummus", "apples", "cheese strings", "juice boxes"]),
    "pizza night": ("homemade pizza", ["pizza bases", "mozzarella", "passata", "pepperoni", "olives"]),
    "garden party": ("party in the garden", ["bunting", "prosecco", "bags of ice", "napkins", "sparkling water"]),
    "housewarming": ("housewarming party", ["beer", "red wine", "paper cups", "party rings", "nuts"]),
}
MOVE_CITIES = ["Leeds", "Bristol", "York", "Cardiff", "Glasgow", "Norwich", "Bath", "Exeter", "Brighton",
               "Sheffield", "Oxford", "Durham"]
NEW_EMPLOYERS = ["Brightside Media", "Foxglove Pharma", "Tidewater Bank", "Quarry Games", "Lumen Architects",
                 "Northstar Rail", "Pebble Software", "Garnet Law"]
RENOVATIONS = ["kitchen", "bathroom", "loft", "garage", "spare bedroom", "garden shed", "hallway", "conservatory"]
EXAMS = ["chemistry", "history", "French", "maths", "biology", "geography", "physics", "economics"]
TODO_TASKS = {
    "move": ["book the removal van", "redirect the post", "cancel the gym membership", "give notice to the landlord",
             "update address at the bank", "pack the books first", "measure the new living room"],
    "job": ["sign and return the contract", "buy two new shirts", "plan the commute", "send bank details to HR",
            "return the old laptop", "read the staff handbook"],
    "renovation": ["get three quotes", "choose the tiles", "order a skip", "book an electrician",
                   "clear out the old units", "pick a paint colour"],
    "exam": ["do the past papers", "make flash cards", "ask about chapter 4", "draw up a revision timetable",
             "join the study group", "rest the day before"],
}
DIARY_ACTIVITIES = [("went kayaking on the river", "kayaking trip"), ("walked up to the old hill fort", "hike"),
                    ("saw a jazz band at the Roundhouse", "jazz gig"), ("did a pottery class", "pottery class"),
                    ("wandered round the farmers market", "farmers market"), ("ran my first 10k", "10k race"),
                    ("went to the observatory open night", "stargazing evening"),
                    ("went strawberry picking", "fruit picking"), ("watched the football at the stadium", "match"),
                    ("went ice skating", "ice skating"), ("tried indoor bouldering", "climbing session"),
                    ("did a Thai cooking class", "cooking class"), ("had a picnic by the canal", "canal picnic")]
DIARY_DETAILS = ["It rained most of the afternoon.", "We got a bit lost on the way back.",
                 "Lunch at a tiny cafe afterwards.", "Much colder than forecast.", "Home by nine, exhausted.",
                 "Cheaper than I expected.", "Want to do it again in the autumn."]
DIARY_FEELINGS = ["Best day in weeks.", "Feeling tired but happy.", "Knees are complaining.", "Such a good laugh.",
                  "A bit underwhelming, honestly.", "Need to sleep for a week."]
BOOK_WORDS = (["Silent", "Salt", "Glass", "Winter", "Hidden", "Last", "Paper", "Copper", "Velvet", "Northern",
               "Quiet", "Burning"],
              ["Orchard", "Road", "Harbour", "Garden", "Letters", "Archive", "Island", "Clock", "River", "Bridge",
               "Season", "Lantern"])
BOOK_HEROES = [("a retired detective", "an old detective"), ("two sisters", "sisters"),
               ("a young violinist", "a violin player"), ("a ship's cook", "a cook on a ship"),
               ("an astronomer", "an astronomer"), ("a village doctor", "a country doctor"),
               ("a chess prodigy", "a chess genius"), ("a beekeeper", "a beekeeper"),
               ("a lighthouse keeper", "a lighthouse keeper"), ("a translator", "a translator")]
BOOK_SETTINGS = [("in Lisbon", "in portugal"), ("on a Scottish island", "on an island in scotland"),
                 ("in 1920s Cairo", "in egypt in the twenties"), ("through a Quebec winter", "in winter in canada"),
                 ("in post-war Berlin", "in berlin after the war"), ("in a Welsh mining town", "in a welsh village"),
                 ("in Renaissance Florence", "in renaissance italy"), ("on the Silk Road", "along the silk road")]
BOOK_OPINIONS = ["Slow start, but the last third is brilliant.", "Too many characters to keep track of.",
                 "Lovely writing about the weather.", "The ending felt rushed.", "Would lend it to Mum.",
                 "Good one for the book club.", "The audiobook narrator is excellent."]
TRAVEL_CITIES = ["Lisbon", "Copenhagen", "Vienna", "Prague", "Barcelona", "Amsterdam", "Budapest", "Dublin", "Rome",
                 "Athens", "Berlin", "Stockholm", "Oslo", "Helsinki", "Madrid", "Florence", "Naples", "Marseille",
                 "Munich", "Zurich", "Riga", "Vilnius", "Nice", "Milan"]
AIRPORTS = ["Gatwick", "Heathrow", "Manchester", "Bristol", "Stansted", "Luton", "Birmingham"]
SIGHTS = ["old town walking tour", "day trip to the coast", "food market", "modern art museum", "boat tour",
          "cathedral and the view from the tower", "cooking class", "botanic garden"]
ORDER_PRODUCTS = [("running shoes", "trainers"), ("winter coat", "warm jacket"), ("coffee grinder", "grinder"),
                  ("bike helmet", "cycling helmet"), ("air fryer", "air fryer"), ("yoga mat", "exercise mat"),
                  ("wireless headphones", "headphones"), ("phone case", "phone cover"), ("kettle", "kettle"),
                  ("board game", "board game"), ("printer ink", "ink cartridges"), ("hiking boots", "walking boots"),
                  ("electric toothbrush", "toothbrush"), ("backpack", "rucksack"), ("umbrella", "umbrella")]
ORDER_SHOPS = ["Bramble & Co", "Outdoor Hub", "Kitchen Corner", "TechNest", "Home Haven"]
CAR_MODELS = ["Ford Fiesta", "VW Golf", "Toyota Yaris", "Honda Jazz", "Skoda Octavia", "Nissan Leaf", "Kia Picanto",
              "Renault Clio", "Mini Cooper", "Volvo V60", "Fiat 500", "Mazda 3"]
CAR_COLOURS = ["silver", "blue", "red", "white", "black", "green"]

# (query, words whose presence in any file would make the query answerable): checked when the collection is built.
NONE_QUERIES = [
    ("invoice from Pacific Timber for roof slates", ["pacific", "slate"]),
    ("photo of a dog playing on the beach", ["dog"]),
    ("recipe for beef wellington", ["wellington"]),
    ("train times to Edinburgh", ["edinburgh"]),
    ("letter from the tax office about my refund", ["tax office", "refund"]),
    ("when is the piano lesson", ["piano"]),
    ("voicemail from the locksmith", ["locksmith"]),
    ("pictures from the wedding", ["wedding"]),
    ("snow on the mountains at sunrise", ["snow", "sunrise"]),
    ("passport renewal form", ["passport"]),
    ("notes on the book about a submarine captain", ["submarine"]),
    ("car insurance claim after the accident", ["accident", "claim"]),
    ("hotel booking in Reykjavik", ["reykjavik"]),
    ("shopping list for the halloween party", ["halloween"]),
    ("electricity meter reading from january", ["meter reading"]),
    ("message from the school about head lice", ["lice"]),
    ("field of sunflowers", ["sunflower"]),
    ("minutes of the pension scheme meeting", ["pension"]),
    ("order of guitar strings", ["guitar"]),
    ("when does the swimming pool reopen after the refit", ["refit", "pool"]),
]

# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class Doc:
    """One document before it is written: its facts, its content, and the questions it can answer."""

    facts: dict                      # "topic" and the values that queries put conditions on
    content: list[str] | str         # the lines of a scan, or the words of a recording or a note
    questions: list[tuple[str, dict]] = field(default_factory=list)  # (query, conditions on facts)
    codes: list[tuple[str, str]] = field(default_factory=list)       # (word a person might add, identifier)


@dataclass
class Item:
    path: str                        # relative POSIX path under the collection folder
    doc: Doc
    twin: str | None = None          # the same document in another format (a deliberate near-duplicate)

    @property
    def text(self) -> str:
        content = self.doc.content
        return "\n".join(content) if isinstance(content, list) else content


class Plan:
    """Everything to write and ask, decided before any file is written (so parallel writing cannot change it)."""

    def __init__(self, seed: int, scale: float):
        self.seed = seed
        self.scale = scale
        self.rng = random.Random(seed)
        self.items: list[Item] = []
        self.jobs: list[tuple] = []      # (writer, path, arguments...) for the worker processes
        self.notes: dict[str, str] = {}  # path -> text, written directly
        self._decks: dict[str, list] = {}
        self._codes: set[str] = set()
        self._numbers: Counter = Counter()

    def count(self, base: int) -> int:
        return max(1, round(base * self.scale))

    def pick(self, pool):
        return self.rng.choice(pool)

    def unique(self, deck: str, pool):
        """The next value of a shuffled deck: every value once before any repeats (a repeat is then a harder
        distractor, which the query check handles)."""
        cards = self._decks.setdefault(deck, [])
        if not cards:
            cards.extend(self.rng.sample(list(pool), len(pool)))
        return cards.pop()

    def code(self, pattern: str) -> str:
        """A new identifier: 'A' becomes a letter (no I or O, as on plates and tickets), '9' a digit."""
        while True:
            made = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") if c == "A" else
                           str(self.rng.randrange(10)) if c == "9" else c for c in pattern)
            if made not in self._codes:
                self._codes.add(made)
                return made

    def date(self, first_month: int = 1, last_month: int = 12) -> datetime.date:
        first = datetime.date(YEAR, first_month, 1)
        last = datetime.date(YEAR + (last_month == 12), last_month % 12 + 1, 1)
        return first + datetime.timedelta(days=self.rng.randrange((last - first).days))

    def clock(self, first_hour: int = 8, last_hour: int = 18) -> str:
        return f"{self.rng.randint(first_hour, last_hour - 1)}:{self.rng.choice(['00', '15', '30', '45'])}"

    def person(self) -> tuple[str, str]:
        return self.pick(FIRST_NAMES), self.pick(SURNAMES)

    def path(self, folder: str, stem: str, ext: str) -> str:
        self._numbers[(folder, stem)] += 1
        return f"{folder}/{stem}-{self._numbers[(folder, stem)]:03d}.{ext}"

    def add_scan(self, stem: str, doc: Doc) -> Item:
        item = Item(self.path("scans", stem, "png"), doc)
        mono = stem in ("receipt", "timetable")  # till rolls and timetables are set in fixed-width type
        style = {"font": "DejaVuSansMono.ttf" if mono else self.pick(["DejaVuSans.ttf", "DejaVuSerif.ttf"]),
                 "size": self.rng.randint(24, 34), "angle": round(self.rng.uniform(-2.5, 2.5), 2),
                 "noise": round(self.rng.uniform(3.0, 7.0), 2), "blur": round(self.rng.uniform(0.3, 0.7), 2),
                 "line_gap": round(self.rng.uniform(0.5, 0.9), 2), "seed": self.rng.randrange(2 ** 31)}
        # Most flatbed scans are saved in grey; a third keep colour (a phone app's "scan").
        self.jobs.append(("scan", item.path, doc.content, style, self.rng.random() < 0.33))
        self.items.append(item)
        return item

    def add_recording(self, stem: str, doc: Doc) -> Item:
        item = Item(self.path("recordings", stem, "wav"), doc)
        self.jobs.append(("recording", item.path, doc.content, self.pick(VOICES), self.rng.randint(130, 160)))
        self.items.append(item)
        return item

    def add_note(self, stem: str, doc: Doc, ext: str = "txt", twin: str | None = None) -> Item:
        item = Item(self.path("notes", stem, ext), doc, twin)
        self.notes[item.path] = doc.content
        self.items.append(item)
        return item

    def add_photo(self, stem: str, source: str, spec: dict) -> Item:
        self._numbers[("photos", stem)] += 1
        number = self._numbers[("photos", stem)]
        item = Item(f"photos/{stem}-{number:02d}.jpg", Doc({"topic": "photo", "source": stem}, ""))
        self.jobs.append(("photo", item.path, source, spec))
        self.items.append(item)
        return item


def long_date(day: datetime.date) -> str:
    return f"{WEEKDAYS[day.weekday()]} {day.day} {MONTHS[day.month - 1]}"


def short_date(day: datetime.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def numeric_date(day: datetime.date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year}"


def spoken_day(day: datetime.date) -> str:
    """As people say it: "Thursday the 14th of May" (espeak reads the ordinal)."""
    suffix = "th" if 10 <= day.day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day.day % 10, "th")
    return f"{WEEKDAYS[day.weekday()]} the {day.day}{suffix} of {MONTHS[day.month - 1]}"


def money(plan: Plan, low: float, high: float) -> float:
    return round(plan.rng.uniform(low, high), 2)


def short_company(name: str) -> str:
    return name.removesuffix(" Ltd")


# ---------------------------------------------------------------------------------------------------- scans


def invoice(plan: Plan) -> Doc:
    supplier = plan.pick(list(SUPPLIERS))
    customer = plan.pick(CUSTOMERS)
    day = plan.date()
    number = plan.code(f"INV-{YEAR}-9999")
    bought = plan.rng.sample(SUPPLIERS[supplier], plan.rng.randint(1, 3))
    lines = [supplier, f"INVOICE {number}", f"Date: {short_date(day)} {YEAR}", f"Bill to: {customer}"]
    total = 0.0
    for printed, _ in bought:
        quantity, price = plan.rng.randint(1, 12), money(plan, 2, 90)
        lines.append(f"{quantity} x {printed}   £{quantity * price:.2f}")
        total += quantity * price
    lines.append(f"Total due: £{total:.2f}")
    facts = {"topic": "invoice", "supplier": supplier, "customer": customer, "month": day.month,
             "items": [printed for printed, _ in bought]}
    name, month = short_company(supplier), MONTHS[day.month - 1]
    questions = []
    for printed, said in bought:
        questions += [(f"invoice from {name} for the {said}", {"supplier": supplier, "items": printed}),
                      (f"how much did {name} charge us for {said}", {"supplier": supplier, "items": printed}),
                      (f"{said} invoice for {customer}", {"customer": customer, "items": printed})]
    questions += [(f"{name} bill from {month}", {"supplier": supplier, "month": day.month}),
                  (f"what did {customer} buy from {name}", {"supplier": supplier, "customer": customer})]
    return Doc(facts, lines, questions, [("invoice", number)])


def receipt(plan: Plan) -> Doc:
    shop, said_shop, shelves = plan.pick(SHOPS)
    day = plan.date()
    bought = plan.rng.sample(shelves, plan.rng.randint(2, 5))
    lines = [shop, f"{numeric_date(day)}  {plan.clock(8, 20)}"]
    total = 0.0
    for printed, _ in bought:
        price = money(plan, 0.8, 15)
        lines.append(f"{printed:<18}{price:>7.2f}")
        total += price
    lines += [f"{'TOTAL':<18}{total:>7.2f}", f"CARD ****{plan.rng.randrange(10000):04d}",
              f"Receipt {plan.code('R-99999')}"]
    facts = {"topic": "receipt", "shop": shop, "date": day.isoformat(), "items": [printed for printed, _ in bought]}
    questions = [(f"how much did I spend at {said_shop} on {MONTHS[day.month - 1]} {day.day}",
                  {"shop": shop, "date": day.isoformat()})]
    for printed, said in bought:
        questions.append((f"receipt from {said_shop} for {said}", {"shop": shop, "items": printed}))
    return Doc(facts, lines, questions)


def recipe_facts(plan: Plan) -> dict:
    """A dish and how it is made; a scanned card and its typed twin share these."""
    sweet_count = len(FLAVOURS) * len(SWEET_BASES)
    pick = plan.unique("dish", range(sweet_count + len(SAVOURY_DISHES)))
    if pick < sweet_count:
        flavour, base = list(FLAVOURS)[pick // len(SWEET_BASES)], list(SWEET_BASES)[pick % len(SWEET_BASES)]
        said, basics, temperatures, minutes = SWEET_BASES[base]
        return {"topic": "recipe", "dish": f"{flavour} {base}", "said": [f"{flavour.lower()} {s}" for s in said],
                "verb": "bake", "temperature": plan.rng.choice(temperatures),
                "minutes": plan.rng.randint(*minutes), "serves": plan.rng.choice([4, 6, 8, 10, 12]),
                "ingredients": plan.rng.sample(basics, 3) + [FLAVOURS[flavour]]}
    name, said, verb, temperature, ingredients = SAVOURY_DISHES[pick - sweet_count]
    minutes = plan.rng.choice([25, 30, 35, 40]) if verb == "simmer" else plan.rng.choice([45, 60, 75, 90])
    return {"topic": "recipe", "dish": name, "said": [said], "verb": verb, "temperature": temperature,
            "minutes": minutes, "serves": plan.rng.choice([2, 4, 6]), "ingredients": list(ingredients)}


def recipe_questions(plan: Plan, facts: dict) -> list[tuple[str, dict]]:
    said = plan.pick(facts["said"])
    does = "do" if said.endswith("s") else "does"  # muffins, biscuits, stuffed peppers
    where = {"dish": facts["dish"]}
    questions = [(f"how long {does} the {said} {facts['verb']}", where), (f"what goes into the {said}", where),
                 (f"how many people {does} the {said} feed", where), (f"{said} recipe", where)]
    if facts["temperature"]:
        questions.append((f"what oven temperature for the {said}", where))
    return questions


def recipe_method(facts: dict) -> str:
    if facts["temperature"]:
        return f"{facts['verb'].capitalize()} at {facts['temperature']} C for {facts['minutes']} minutes."
    return f"Simmer gently for {facts['minutes']} minutes."


def recipe_card(plan: Plan) -> Doc:
    facts = recipe_facts(plan)
    lines = [facts["dish"], f"Serves {facts['serves']}"] + facts["ingredients"] + [recipe_method(facts)]
    return Doc(facts, lines, recipe_questions(plan, facts))


def letter(plan: Plan) -> Doc:
    day = plan.date()
    later = day + datetime.timedelta(days=plan.rng.randint(10, 60))
    subject = plan.unique("letter subject", ["rent", "school trip", "insurance", "interview", "membership", "bins",
                                             "delivery", "library"])
    codes = []
    if subject == "rent":
        sender, flat = "Westfield Housing Association", plan.unique("flat", FLATS)
        body = [f"Your monthly rent for Flat {flat}",
                f"will rise to £{plan.rng.randint(650, 1400)} from {short_date(later)}.",
                "Please update your standing order."]
        facts = {"flat": flat}
        questions = [(f"when does the rent go up for flat {flat}", facts),
                     (f"housing association letter about the new rent for flat {flat}", facts)]
    elif subject == "school trip":
        sender, (place, said) = "St Anne's Primary School", plan.unique("trip", SCHOOL_TRIPS)
        body = [f"Class {plan.rng.randint(1, 6)} will visit the {place}", f"on {long_date(later)}.",
                f"The trip costs £{plan.rng.choice([8, 10, 12, 15])} per child.", "Please pay at the office."]
        facts = {"place": place}
        questions = [(f"how much is the school trip to the {said}", facts),
                     (f"when is the class outing to the {said}", facts)]
    elif subject == "insurance":
        sender, kind = "Meridian Insurance", plan.unique("insurance", INSURANCE_TYPES)
        policy = plan.code("AA-999999")
        body = [f"Your {kind} insurance, policy {policy},", f"renews on {short_date(later)} {YEAR}.",
                f"The new yearly premium is £{plan.rng.randint(90, 900)}.", "No action is needed to stay covered."]
        facts = {"kind": kind}
        questions = [(f"when is the {kind} insurance up for renewal", facts),
                     (f"what will the {kind} cover cost this year", facts)]
        codes = [("policy", policy)]
    elif subject == "interview":
        sender, (role, said) = plan.pick(EMPLOYERS), plan.unique("role", JOB_ROLES)
        body = ["We are pleased to invite you to", f"interview for the post of {role}",
                f"on {long_date(later)} at {plan.clock(9, 17)}.", "Please bring photo ID."]
        facts = {"role": role}
        questions = [(f"when is my {said} job interview", facts),
                     (f"invitation to interview for the {said} position", facts)]
    elif subject == "membership":
        (sender, said) = plan.unique("club", CLUBS)
        body = [f"Your membership of {sender}", f"expires on {short_date(later)}.",
                f"The fee for next year is £{plan.rng.randint(40, 400)}.", "Renew online or at reception."]
        facts = {"club": sender}
        questions = [(f"when does my {said} membership run out", facts),
                     (f"{said} annual fee for next year", facts)]
    elif subject == "bins":
        sender, (colour, waste) = "Northfield Council", plan.unique("bin", BINS)
        body = [f"From {short_date(later)} your {colour} bin", f"({waste}) will be emptied",
                f"every other {WEEKDAYS[plan.rng.randrange(5)]}.", "Please put it out by 7 am."]
        facts = {"bin": colour}
        questions = [(f"which day is the {colour} bin collected now", facts),
                     (f"council letter about the {colour} bin collection day", facts)]
    elif subject == "delivery":
        sender, (product, said) = plan.pick(FURNITURE_SHOPS), plan.unique("furniture", FURNITURE)
        body = [f"Your {product} will be delivered", f"on {long_date(later)}",
                f"between {plan.clock(8, 12)} and {plan.clock(13, 18)}.", "Someone must be home to sign."]
        facts = {"product": product}
        questions = [(f"when is the new {said} arriving", facts),
                     (f"delivery slot for the {said}", facts)]
    else:
        sender, (title, said) = "Northgate Library", plan.unique("library book", LIBRARY_BOOKS)
        body = ["Our records show that", f"'{title}'", f"is {plan.rng.randint(7, 40)} days overdue.",
                "Please return or renew it online."]
        facts = {"book": title}
        questions = [(f"library letter about the overdue {said}", facts),
                     (f"did the library write about the {said} I borrowed", facts)]
    lines = [f"{short_date(day)} {YEAR}", f"Dear {plan.pick(['Mr', 'Ms', 'Mrs', 'Dr'])} {plan.pick(SURNAMES)},", *body,
             plan.pick(["Yours sincerely,", "Kind regards,"]), sender]
    return Doc({"topic": "letter", "subject": subject, **facts}, lines,
               [(query, {"subject": subject, **where}) for query, where in questions], codes)


def timetable(plan: Plan) -> Doc:
    # Dealt from every route on every day type, so some routes get two timetables: each other's distractors.
    mode, said, number, days = plan.unique("timetable", [(mode, said, number, days) for mode, said, numbers in TRANSIT
                                                         for number in numbers for days in DAY_TYPES])
    # The same route stops at the same places whatever the day: its stops come from the route alone.
    stops = random.Random(f"{plan.seed}/{mode}{number}").sample(STOPS, 5)
    first = plan.rng.randint(5 * 60, 9 * 60) // 5 * 5
    gap = plan.rng.choice([10, 15, 20, 30, 60])
    lines = [f"{mode} {number}  {stops[0]} - {stops[-1]}", days]
    for place, minutes in zip(stops, np.cumsum([0] + [plan.rng.randint(3, 9) for _ in stops[1:]])):
        times = [first + int(minutes) + k * gap for k in range(3)]
        lines.append(f"{place:<15}" + "  ".join(f"{t // 60:02d}:{t % 60:02d}" for t in times))
    where = {"mode": mode, "route": number, "days": days}
    day_said = plan.pick(DAY_TYPES[days])
    questions = [(f"first {said} {number} {day_said}", where),
                 (f"what time does the number {number} {said} leave {stops[0].lower()} {day_said}", where),
                 (f"when does the {number} get to {stops[-1].lower()} {day_said}", where)]
    return Doc({"topic": "timetable", **where}, lines, questions)


def notice(plan: Plan) -> Doc:
    kind, place = plan.unique("notice", [(kind, building) for kind in NOTICE_TYPES for building in BUILDINGS]
                              + [("lost cat", name) for name in LOST_CATS])
    day = plan.date()
    later = day + datetime.timedelta(days=plan.rng.randint(1, 4))
    where = {"kind": kind, "place": place}
    if kind == "lift":
        lines = ["NOTICE TO RESIDENTS", f"The lift at {place} will be", f"out of service from {short_date(day)}",
                 f"to {short_date(later)} while the motor", "is replaced. Sorry for the trouble."]
        questions = [(f"when will the lift at {place} be working again", where),
                     (f"{place} elevator repair dates", where)]
    elif kind == "water":
        lines = ["WATER SUPPLY WORKS", f"The water at {place} will be off", f"on {long_date(day)}",
                 f"from {plan.clock(8, 12)} to {plan.clock(13, 17)}.", "Please fill a few bottles first."]
        questions = [(f"when is the water being cut off at {place}", where),
                     (f"no water in {place} which day", where)]
    elif kind == "fire alarm":
        lines = ["FIRE ALARM TEST", f"The alarm at {place} is tested",
                 f"every {plan.pick(WEEKDAYS[:5])} at {plan.clock(9, 12)}.", "You do not need to leave the building."]
        questions = [(f"what day do they test the fire alarm at {place}", where)]
    elif kind == "party":
        lines = ["SUMMER PARTY", f"All residents of {place} are invited", f"to a garden party on {long_date(day)}",
                 f"from {plan.clock(12, 18)}. Bring a dish to share!"]
        questions = [(f"when is the {place} residents' party", where),
                     (f"summer get-together at {place}", where)]
    elif kind == "car park":
        lines = ["CAR PARK CLOSED", f"The car park at {place} will be",
                 f"resurfaced on {short_date(day)} and {short_date(later)}.", "Please park on Mill Road on those days."]
        questions = [(f"when is the {place} car park shut for resurfacing", where),
                     (f"where to park while the {place} car park is closed", where)]
    else:
        coat = plan.pick(CAT_COATS)
        lines = ["LOST CAT", f"{place} is a {coat} cat, last seen",
                 f"near {plan.pick(STREETS)} on {WEEKDAYS[day.weekday()]}.",
                 f"Please call 07{plan.rng.randrange(10 ** 9):09d}"]
        questions = [(f"poster about the missing cat {place}", where),
                     (f"missing {coat} cat poster", {"kind": kind, "coat": coat})]
        return Doc({"topic": "notice", **where, "coat": coat}, lines, questions)
    return Doc({"topic": "notice", **where}, lines, questions)


def appointment(plan: Plan) -> Doc:
    (printed, said, practice), patient = plan.unique(
        "appointment", [(kind, name) for kind in APPOINTMENTS for name in FIRST_NAMES])
    surname, doctor_name = plan.pick(SURNAMES), plan.pick(SURNAMES)
    with_whom = f"Dr. {doctor_name}" if practice != "Studio Nine Salon" else plan.pick(FIRST_NAMES)
    day = plan.date()
    lines = [practice, "APPOINTMENT", f"Patient: {patient} {surname}", f"{printed} with {with_whom}",
             f"{long_date(day)}, {plan.clock(8, 18)}", "Please arrive 10 minutes early."]
    facts = {"topic": "appointment", "kind": printed, "patient": patient, "with": with_whom}
    questions = [(f"when is {patient}'s {said}", {"kind": printed, "patient": patient}),
                 (f"what time is the {said} with {with_whom}", {"kind": printed, "with": with_whom})]
    return Doc(facts, lines, questions)


def parking_ticket(plan: Plan, household_plates: list[str]) -> Doc:
    street = plan.unique("ticket street", STREETS)
    # A third of the tickets went to a car the household keeps notes on: its plate is then in two files.
    plate = plan.pick(household_plates) if household_plates and plan.rng.random() < 0.33 else plan.code("AA99 AAA")
    notice_number = plan.code("AA99999999")
    day = plan.date()
    lines = ["PENALTY CHARGE NOTICE", f"PCN {notice_number}", f"Vehicle: {plate}", f"Location: {street}",
             f"{numeric_date(day)} at {plan.clock(7, 20)}", plan.pick(PARKING_REASONS),
             "Pay £70 within 28 days (£35 within 14)"]
    where = {"street": street}
    questions = [(f"parking fine on {street}", where), (f"penalty charge for parking in {street}", where)]
    return Doc({"topic": "parking ticket", **where}, lines, questions, [("reg", plate), ("pcn", notice_number)])


def booking(plan: Plan) -> Doc:
    city = plan.unique("booking city", BOOKING_CITIES)
    first, last = plan.person()
    arrive = plan.date()
    leave = arrive + datetime.timedelta(days=plan.rng.randint(2, 6))
    reference = plan.code("AA9A9A")
    lines = ["BOOKING CONFIRMATION", f"{plan.pick(HOTELS)}, {city}", f"Guest: {first} {last}",
             f"Check-in: {long_date(arrive)}", f"Check-out: {long_date(leave)}",
             f"{plan.pick(ROOMS)}, breakfast included", f"Reference: {reference}"]
    where = {"city": city}
    questions = [(f"hotel reservation in {city}", where), (f"when do we check in at the {city} hotel", where),
                 (f"how many nights are we staying in {city}", where)]
    return Doc({"topic": "booking", **where}, lines, questions, [("booking", reference)])


# ------------------------------------------------------------------------------------------------ recordings


def reminder(plan: Plan) -> Doc:
    kind = plan.unique("reminder", ["return", "birthday", "bill", "collect", "plants"])
    day = plan.date()
    if kind == "return":
        (tool, said), name = plan.unique("borrowed", [(tool, n) for tool in TOOLS for n in FIRST_NAMES])
        text = f"Note to self. Give the {tool} back to {name} next door before {WEEKDAYS[day.weekday()]}."
        where = {"lender": name}
        questions = [(f"what did I borrow from {name}", where), (f"when do I have to return {name}'s {said}", where)]
    elif kind == "birthday":
        name = plan.unique("birthday", FIRST_NAMES)
        text = (f"Reminder. {name}'s birthday is on {spoken_day(day)}. "
                f"Good present idea: {plan.pick(GIFTS)}.")
        where = {"person": name}
        questions = [(f"gift idea for {name}", where), (f"when is {name}'s birthday", where)]
    elif kind == "bill":
        bill, said = plan.unique("bill", BILLS)
        text = (f"Remember to pay the {bill} bill by {WEEKDAYS[day.weekday()]}. "
                f"It is {plan.rng.randint(30, 240)} pounds this time.")
        where = {"bill": bill}
        questions = [(f"how much is the {said} this time", where), (f"deadline for paying the {said}", where)]
    elif kind == "collect":
        thing, said = plan.unique("pickup", PICKUPS)
        text = f"Don't forget to pick up the {thing} on {WEEKDAYS[day.weekday()]} after {plan.clock(10, 17)}."
        where = {"thing": thing}
        questions = [(f"when can I collect the {said}", where), (f"which day to fetch the {said}", where)]
    else:
        name = plan.unique("plants", FIRST_NAMES)
        text = (f"I promised to water {name}'s plants every evening until {WEEKDAYS[day.weekday()]}, "
                f"and to take in the post.")
        where = {"neighbour": name}
        questions = [(f"how long am I looking after {name}'s plants", where)]
    return Doc({"topic": "reminder", "kind": kind, **where}, text,
               [(query, {"kind": kind, **conditions}) for query, conditions in questions])


def voicemail(plan: Plan) -> Doc:
    kind = plan.unique("voicemail", ["garage", "restaurant", "plumber", "viewing", "vet"])
    caller = plan.pick(FIRST_NAMES)
    weekday = plan.pick(WEEKDAYS)
    if kind == "garage":
        garage, (repair, said) = plan.unique("garage job", [(g, r) for g in GARAGES for r in REPAIRS])
        text = (f"Hi, it's {caller} from {garage}. Your car is ready, the {repair} came to "
                f"{plan.rng.randint(80, 600)} pounds.")
        where = {"garage": garage, "repair": repair}
        questions = [(f"how much did {garage} charge for the {said}", where),
                     (f"garage message about the {said}", {"repair": repair})]
    elif kind == "restaurant":
        place = plan.unique("restaurant", RESTAURANTS)
        text = (f"Hello, {place} here, confirming your table for {plan.rng.randint(2, 8)} on {weekday} at "
                f"{plan.clock(18, 21)}. Call us if you are late.")
        where = {"restaurant": place}
        questions = [(f"what time is our table at {place}", where),
                     (f"how many people is the {place} reservation for", where)]
    elif kind == "plumber":
        fixture, said = plan.unique("fixture", FIXTURES)
        text = (f"Hi, it's {caller} the plumber. I can look at the {fixture} on {weekday} morning, "
                f"around {plan.clock(8, 11)}. Text me if not.")
        where = {"fixture": fixture}
        questions = [(f"when is the plumber coming about the {said}", where)]
    elif kind == "viewing":
        street = plan.unique("viewing street", STREETS)
        text = (f"Hello, {caller} from {plan.pick(AGENCIES)} here. The viewing of the flat on {street} is booked "
                f"for {weekday} at {plan.clock(10, 18)}.")
        where = {"street": street}
        questions = [(f"when are we seeing the flat on {street}", where),
                     (f"estate agent call about the {street} flat", where)]
    else:
        pet, animal = plan.unique("vet pet", VET_PETS)
        text = (f"Hilltop Vets here. {pet} the {animal} is fine after the operation and can go home after four. "
                f"The bill is {plan.rng.randint(90, 450)} pounds.")
        where = {"pet": pet}
        questions = [(f"when can {pet} come home from the vet", where),
                     (f"how much is the vet bill for {pet}'s surgery", where)]
    return Doc({"topic": "voicemail", "kind": kind, **where}, text,
               [(query, {"kind": kind, **conditions}) for query, conditions in questions])


def meeting_facts(plan: Plan) -> dict:
    """One meeting; its voice memo and its typed minutes (the twins) share these."""
    (product, said), kind = plan.unique("meeting", [(p, k) for p in PRODUCTS for k in MEETING_KINDS])
    action, who_asks = plan.pick(ACTIONS)
    return {"topic": "meeting", "project": f"{product} {kind}", "said": f"{said} {kind}",
            "decision": plan.pick(DECISIONS), "owner": plan.pick(FIRST_NAMES), "action": action, "who asks": who_asks,
            "due": plan.pick(WEEKDAYS[:5]), "attendees": plan.rng.sample(FIRST_NAMES, 3)}


def meeting_questions(facts: dict) -> list[tuple[str, dict]]:
    where = {"project": facts["project"]}
    return [(f"what did we decide about the {facts['said']}", where),
            (f"{facts['who asks']} for the {facts['said']}", where),
            (f"outcome of the {facts['said']} meeting", where)]


def meeting_memo(plan: Plan, facts: dict | None = None) -> Doc:
    facts = facts or meeting_facts(plan)
    text = (f"Notes from the {facts['project']} meeting. We agreed to {facts['decision']}, "
            f"and {facts['owner']} will {facts['action']} by {facts['due']}.")
    return Doc(facts, text, meeting_questions(facts))


def message(plan: Plan) -> Doc:
    kind = plan.unique("message", ["dinner", "pickup", "key", "cottage"])
    to = plan.pick(FIRST_NAMES)
    weekday = plan.pick(WEEKDAYS)
    if kind == "dinner":
        host = plan.unique("dinner host", FIRST_NAMES)
        text = (f"Hi {to}, dinner at {host}'s is moved to {weekday} at {plan.clock(18, 21)}. "
                f"Could you bring the {plan.pick(DINNER_DISHES)}?")
        where = {"host": host}
        questions = [(f"when is dinner at {host}'s now", where), (f"what to bring to {host}'s dinner", where)]
    elif kind == "pickup":
        child, (club, said) = plan.unique("child", [(c, k) for c in FIRST_NAMES for k in CLUBS_FOR_KIDS])
        text = f"Hey, can you collect {child} from {club} on {weekday} at {plan.clock(15, 19)}? I'm stuck at work."
        where = {"child": child, "club": club}
        questions = [(f"what time does {child} need fetching from {said}", where)]
    elif kind == "key":
        to = plan.unique("key for", FIRST_NAMES)
        text = (f"Hi {to}, the spare key is under the {plan.pick(KEY_SPOTS)}, and the alarm code is "
                f"{plan.rng.randrange(1000, 10000)}.")
        where = {"to": to}
        questions = [(f"where did I tell {to} the spare key is hidden", where),
                     (f"alarm code I gave {to}", where)]
    else:
        place = plan.unique("cottage", COTTAGE_PLACES)
        text = (f"Hi {to}, we've booked the cottage in {place} for the first week of "
                f"{MONTHS[plan.rng.randrange(4, 10)]}. It sleeps {plan.rng.randint(4, 8)}.")
        where = {"place": place}
        questions = [(f"which week is the holiday cottage in {place}", where),
                     (f"how many beds in the {place} cottage", where)]
    return Doc({"topic": "message", "kind": kind, **where}, text,
               [(query, {"kind": kind, **conditions}) for query, conditions in questions])


# ----------------------------------------------------------------------------------------------------- notes


def shopping_list(plan: Plan) -> Doc:
    occasion, host = plan.unique("occasion", [(o, h) for o in OCCASIONS for h in FIRST_NAMES])
    said, things = OCCASIONS[occasion]
    day = plan.date()
    wanted = plan.rng.sample(things, min(len(things), plan.rng.randint(4, 6)))
    text = f"Shopping for the {occasion} at {host}'s ({long_date(day)})\n" + "".join(f"- {t}\n" for t in wanted)
    where = {"occasion": occasion, "host": host}
    questions = [(f"what do I need to buy for the {said} at {host}'s", where),
                 (f"shopping list for {host}'s {said}", where)]
    return Doc({"topic": "shopping", **where}, text, questions)


def todo_list(plan: Plan) -> Doc:
    kind, subject = plan.unique("todo", [("move", c) for c in MOVE_CITIES] + [("job", e) for e in NEW_EMPLOYERS]
                                + [("renovation", r) for r in RENOVATIONS] + [("exam", e) for e in EXAMS])
    title, questions_about = {
        "move": (f"To do before moving to {subject}", [f"checklist for moving house to {subject}",
                                                       f"what's left before the move to {subject}"]),
        "job": (f"To do before starting at {subject}", [f"things to sort before my first day at {subject}"]),
        "renovation": (f"To do: {subject} makeover", [f"jobs for redoing the {subject}",
                                                      f"{subject} renovation plan"]),
        "exam": (f"{subject.capitalize()} exam prep", [f"revision plan for the {subject} exam"]),
    }[kind]
    tasks = plan.rng.sample(TODO_TASKS[kind], 4)
    text = title + "\n" + "".join(f"[{'x' if plan.rng.random() < 0.3 else ' '}] {task}\n" for task in tasks)
    where = {"kind": kind, "subject": subject}
    return Doc({"topic": "todo", **where}, text, [(query, where) for query in questions_about])


def minutes(plan: Plan, facts: dict | None = None) -> Doc:
    facts = facts or meeting_facts(plan)
    day = plan.date()
    text = (f"# {facts['project'].capitalize()} meeting, {short_date(day)}\n\n"
            f"Attendees: {', '.join(facts['attendees'])}\n\n## Decisions\n- We will {facts['decision']}.\n\n"
            f"## Actions\n- {facts['owner']}: {facts['action']} by {facts['due']}\n")
    return Doc(facts, text, meeting_questions(facts))


def diary(plan: Plan) -> Doc:
    (activity, said), friend = plan.unique("diary", [(a, f) for a in DIARY_ACTIVITIES for f in FIRST_NAMES])
    day = plan.date()
    text = (f"{long_date(day)} {YEAR}\n\n{activity.capitalize()} with {friend}. "
            f"{plan.pick(DIARY_DETAILS)} {plan.pick(DIARY_FEELINGS)}\n")
    where = {"activity": activity, "friend": friend}
    questions = [(f"diary entry about the {said} with {friend}", where),
                 (f"when was the {said} with {friend}", where)]
    return Doc({"topic": "diary", **where}, text, questions)


def book_notes(plan: Plan) -> Doc:
    (hero, hero_said), (setting, setting_said) = plan.unique(
        "book theme", [(h, s) for h in BOOK_HEROES for s in BOOK_SETTINGS])
    title = plan.unique("book title", [f"The {a} {n}" for a in BOOK_WORDS[0] for n in BOOK_WORDS[1]])
    author = " ".join(plan.person())
    opinions = plan.rng.sample(BOOK_OPINIONS, 2)
    text = (f"Book notes: {title} by {author}\nAbout {hero} {setting}.\n"
            f"- {opinions[0]}\n- {opinions[1]}\nRating: {plan.rng.randint(2, 5)}/5\n")
    where = {"hero": hero, "setting": setting}
    questions = [(f"my notes on the novel about {hero_said} {setting_said}", where),
                 (f"what did I rate the book about {hero_said} {setting_said}", where),
                 (f"what did I think of {title}", {"title": title})]
    return Doc({"topic": "book", "title": title, **where}, text, questions)


def travel_plan(plan: Plan) -> Doc:
    city = plan.unique("travel city", TRAVEL_CITIES)
    leave = plan.date(3, 10)
    back = leave + datetime.timedelta(days=plan.rng.randint(3, 8))
    reference = plan.code("AA9A9A")
    flight = plan.code("AA999")
    hotel = plan.pick(HOTELS)
    sights = plan.rng.sample(SIGHTS, 2)
    text = (f"# {city} trip, {short_date(leave)} - {short_date(back)}\n\n"
            f"- Flight {flight} from {plan.pick(AIRPORTS)} at {plan.clock(6, 20)}\n"
            f"- Staying at {hotel}, booking ref {reference}\n- Must do: {sights[0]}; {sights[1]}\n")
    month = MONTHS[leave.month - 1]
    where = {"city": city, "month": leave.month}
    questions = [(f"when do we fly out to {city}", {"city": city}),
                 (f"which hotel are we in for {city}", {"city": city}),
                 (f"plans for the {city} holiday in {month}", where)]
    return Doc({"topic": "travel", **where}, text, questions, [("booking", reference), ("flight", flight)])


def recipe_note(plan: Plan, facts: dict | None = None) -> Doc:
    facts = facts or recipe_facts(plan)
    method = (f"Oven {facts['temperature']} degrees, about {facts['minutes']} min."
              if facts["temperature"] else f"Simmer about {facts['minutes']} min, stirring now and then.")
    text = (f"# {facts['dish']} (from {plan.pick(FIRST_NAMES)})\n\nFeeds {facts['serves']}. {method}\n\n"
            + "".join(f"- {ingredient}\n" for ingredient in facts["ingredients"])
            + f"\n{plan.pick(RECIPE_TIPS)}\n")
    return Doc(facts, text, recipe_questions(plan, facts))


def orders(plan: Plan) -> Doc:
    lines, questions, codes, placed = ["Orders to keep an eye on"], [], [], []
    for _ in range(plan.rng.randint(1, 3)):
        (product, said), shop = plan.unique("order", [(p, s) for p in ORDER_PRODUCTS for s in ORDER_SHOPS])
        code, due = plan.code("ORD-99999-A"), plan.date()
        lines.append(f"- {product} from {shop}, order {code}, due {short_date(due)}")
        questions.append((f"when does the {said} order from {shop} arrive", {"orders": f"{product} from {shop}"}))
        codes.append(("order", code))
        placed.append(f"{product} from {shop}")
    return Doc({"topic": "orders", "orders": placed}, "\n".join(lines) + "\n", questions, codes)


def car_record(plan: Plan, plate: str) -> Doc:
    colour, model = plan.unique("car", [(c, m) for c in CAR_COLOURS for m in CAR_MODELS])
    text = (f"Car: {colour} {model}, reg {plate}\nMOT due {short_date(plan.date())} {YEAR}\n"
            f"Last service {short_date(plan.date())} at {plan.pick(GARAGES)}, {plan.rng.randint(8, 95)},"
            f"{plan.rng.randrange(1000):03d} miles\nTyres: 32 psi front, 30 rear\n")
    where = {"colour": colour, "model": model}
    questions = [(f"when is the MOT due on the {colour} {model}", where),
                 (f"service history of the {colour} {model}", where)]
    return Doc({"topic": "car", **where}, text, questions, [("reg", plate)])


# --------------------------------------------------------------------------------------------------- photos


def plan_photos(plan: Plan) -> None:
    """Variants of each source: the whole picture, crops, tone changes, mirror images, and near-duplicates of an
    earlier variant (re-saved a little smaller, a touch brighter) as a phone's burst or an edited copy would be."""
    earlier: dict[str, list[dict]] = defaultdict(list)
    for index in range(max(len(PHOTO_SOURCES), plan.count(PHOTO_COUNT))):
        stem, source, _ = PHOTO_SOURCES[index % len(PHOTO_SOURCES)]
        rng = plan.rng
        if earlier[stem] and rng.random() < 0.2:
            spec = dict(rng.choice(earlier[stem]))
            spec.update(megapixels=spec["megapixels"] * rng.uniform(0.8, 0.98),
                        brightness=spec["brightness"] * rng.uniform(0.97, 1.03), quality=rng.randint(84, 95))
        else:
            # The first variant is the whole picture; crops keep at least 0.6 of each side, so the subject stays
            # recognisable (a crop of a horse's legs is no longer "a horse").
            share = 1.0 if not earlier[stem] else rng.uniform(0.6, 0.95)
            width, height = share * rng.uniform(0.8, 1.0), share * rng.uniform(0.8, 1.0)
            left, top = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
            spec = {"box": (left, top, left + width, top + height),
                    "megapixels": float(np.exp(rng.uniform(np.log(0.3), np.log(3.0)))),
                    "brightness": rng.uniform(0.85, 1.15), "contrast": rng.uniform(0.85, 1.15),
                    "saturation": rng.uniform(0.8, 1.2), "mirror": rng.random() < 0.2,
                    "quality": rng.randint(86, 94)}
        earlier[stem].append(spec)
        plan.add_photo(stem, source, spec)


# ---------------------------------------------------------------------------------------------------- queries

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def matches(facts: dict, where: dict) -> bool:
    for name, wanted in where.items():
        have = facts.get(name)
        if have != wanted and not (isinstance(have, list) and wanted in have):
            return False
    return True


def in_turn(groups) -> list:
    """The first of every group, then the second of every group, and so on."""
    return [member for round_ in itertools.zip_longest(*groups) for member in round_ if member is not None]


def plan_queries(plan: Plan) -> list[dict]:
    """Queries of every kind, each kept only if its conditions pick out exactly the file(s) it was written for."""
    items = plan.items
    copied = {tuple(gram) for item in items for line in item.text.splitlines()
              for gram in zip(*(words(line)[k:] for k in range(5)))}
    asked: set[str] = set()

    def relevant_to(where: dict) -> list[str]:
        return sorted(item.path for item in items if matches(item.doc.facts, where))

    def acceptable(text: str) -> bool:
        grams = zip(*(words(text)[k:] for k in range(5)))
        return text not in asked and not any(tuple(gram) in copied for gram in grams)

    def by_topic_in_turn(candidates: list[Item]) -> list[Item]:
        """Twins first, then one document of each topic in turn, so every topic gets asked about."""
        groups = defaultdict(list)
        for item in candidates:
            groups[item.doc.facts["topic"]].append(item)
        for group in groups.values():
            plan.rng.shuffle(group)
        turns = in_turn(groups.values())
        return [item for item in turns if item.twin] + [item for item in turns if not item.twin]

    queries: list[dict] = []

    def ask(kind: str, candidates: list[Item]) -> None:
        wanted = plan.count(QUERY_COUNTS[kind])
        for item in by_topic_in_turn(candidates):
            if sum(q["kind"] == kind for q in queries) >= wanted:
                return
            intended = sorted([item.path] + ([item.twin] if item.twin else []))
            options = list(item.doc.questions)
            plan.rng.shuffle(options)
            for text, where in options:
                where = {"topic": item.doc.facts["topic"], **where}
                if relevant_to(where) == intended and acceptable(text):
                    queries.append({"text": text, "kind": kind, "relevant": intended})
                    asked.add(text)
                    break

    by_folder = defaultdict(list)
    for item in items:
        by_folder[item.path.split("/")[0]].append(item)
    twinned = {item.twin for item in items if item.twin}  # the typed copies are asked about with their originals
    ask("ocr", by_folder["scans"])
    ask("transcript", by_folder["recordings"])

    # Every described photograph once before any gets its second description.
    described = [(stem, texts[k]) for k in range(2) for stem, _, texts in PHOTO_SOURCES if len(texts) > k]
    for stem, text in described[:plan.count(QUERY_COUNTS["picture"])]:
        relevant = relevant_to({"topic": "photo", "source": stem})
        if relevant:
            queries.append({"text": text, "kind": "picture", "relevant": relevant})
            asked.add(text)

    ask("note", [item for item in by_folder["notes"] if item.path not in twinned])

    holders = defaultdict(list)  # identifier -> the files that hold it
    for item in items:
        for _, code in item.doc.codes:
            holders[code].append(item.path)
    labelled = defaultdict(list)  # one kind of identifier after another: invoice, reg, booking, order, policy...
    for item in plan.rng.sample(items, len(items)):
        if item.doc.codes:
            label, code = plan.pick(item.doc.codes)
            if (label, code) not in labelled[label]:  # a shared plate is met once per file that holds it
                labelled[label].append((label, code))
    for codes in labelled.values():
        codes.sort(key=lambda labelled_code: -len(holders[labelled_code[1]]))  # a plate in two files goes first
    for label, code in in_turn(labelled.values())[:plan.count(QUERY_COUNTS["keyword"])]:
        text = code if plan.rng.random() < 0.65 else f"{label} {code}"  # pasted bare, or with a word in front
        queries.append({"text": text, "kind": "keyword", "relevant": sorted(set(holders[code]))})

    texts = [item.text.lower() for item in items]
    for text, giveaways in plan.rng.sample(NONE_QUERIES, len(NONE_QUERIES))[:plan.count(QUERY_COUNTS["none"])]:
        # Whole words, plurals included ("lice" is no giveaway in "sliced", "sunflowers" is)
        found = [word for word in giveaways if any(re.search(rf"\b{word}s?\b", body) for body in texts)]
        if found:
            raise RuntimeError(f"the no-answer query {text!r} has an answer: {found} occur in the collection")
        queries.append({"text": text, "kind": "none", "relevant": []})

    return [{"id": f"q{number:03d}", **query} for number, query in enumerate(queries, 1)]


def plan_collection(seed: int, scale: float) -> tuple[Plan, list[dict]]:
    plan = Plan(seed, scale)
    plan_photos(plan)

    # Car records come first: a few parking tickets go to these cars, so a plate can be in two files.
    plates = [plan.code("AA99 AAA") for _ in range(plan.count(NOTE_COUNTS["car"]))]
    scan_makers = {"invoice": invoice, "receipt": receipt, "recipe": recipe_card, "letter": letter,
                   "timetable": timetable, "notice": notice, "appointment": appointment,
                   "parking-ticket": lambda p: parking_ticket(p, plates), "booking": booking}
    recipe_cards = []
    for stem, base in SCAN_COUNTS.items():
        for _ in range(plan.count(base)):
            item = plan.add_scan(stem, scan_makers[stem](plan))
            if stem == "recipe":
                recipe_cards.append(item)

    recording_makers = {"reminder": reminder, "voicemail": voicemail, "meeting": meeting_memo, "message": message}
    memos = []
    for stem, base in RECORDING_COUNTS.items():
        for _ in range(plan.count(base)):
            item = plan.add_recording(stem, recording_makers[stem](plan))
            if stem == "meeting":
                memos.append(item)

    # The twins: a few recipe cards typed up as notes, a few voice memos written up as minutes.
    twins_written = Counter()
    for card in recipe_cards[:plan.count(TWIN_COUNTS["recipe"])]:
        card.twin = plan.add_note("recipe", recipe_note(plan, card.doc.facts), "md", twin=card.path).path
        twins_written["recipe"] += 1
    for memo in memos[:plan.count(TWIN_COUNTS["meeting"])]:
        memo.twin = plan.add_note("minutes", minutes(plan, memo.doc.facts), "md", twin=memo.path).path
        twins_written["minutes"] += 1

    note_makers = {"shopping": (shopping_list, "txt"), "todo": (todo_list, "txt"), "minutes": (minutes, "md"),
                   "diary": (diary, "txt"), "book-notes": (book_notes, "txt"), "travel": (travel_plan, "md"),
                   "recipe": (recipe_note, "md"), "orders": (orders, "txt")}
    for stem, (make, ext) in note_makers.items():
        for _ in range(max(0, plan.count(NOTE_COUNTS[stem]) - twins_written[stem])):
            plan.add_note(stem, make(plan), ext)
    for plate in plates:
        plan.add_note("car", car_record(plan, plate))

    return plan, plan_queries(plan)


# ------------------------------------------------------------------------------------------ writing (workers)


@functools.lru_cache(maxsize=None)
def source_photo(name: str) -> Image.Image:
    from skimage import data

    pixels = getattr(data, name)()
    if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
        pixels = pixels[0]
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    image = Image.fromarray(pixels)
    if image.mode == "RGBA":  # the logo: transparent corners become white paper, not black
        return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    return image.convert("RGB")


def write_photo(path: Path, source: str, spec: dict) -> None:
    image = source_photo(source)
    left, top, right, bottom = spec["box"]
    piece = image.crop((round(left * image.width), round(top * image.height),
                        round(right * image.width), round(bottom * image.height)))
    factor = (spec["megapixels"] * 1e6 / (piece.width * piece.height)) ** 0.5
    piece = piece.resize((max(16, round(piece.width * factor)), max(16, round(piece.height * factor))),
                         Image.BICUBIC)
    piece = ImageEnhance.Brightness(piece).enhance(spec["brightness"])
    piece = ImageEnhance.Contrast(piece).enhance(spec["contrast"])
    piece = ImageEnhance.Color(piece).enhance(spec["saturation"])
    if spec["mirror"]:
        piece = ImageOps.mirror(piece)
    piece.save(path, quality=spec["quality"])


def write_scan(path: Path, lines: list[str], style: dict, colour: bool) -> None:
    image = render(lines, **style).image
    (image if colour else image.convert("L")).save(path)


def write_recording(path: Path, text: str, voice: str, words_per_minute: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(raw), text], check=True)
        # -D: no dither, so the same text always gives the same bytes; -G: lower the gain where resampling would clip
        subprocess.run(["sox", "-G", str(raw), "-D", "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)


WRITERS = {"photo": write_photo, "scan": write_scan, "recording": write_recording}


def run_job(folder: str, job: tuple) -> None:
    kind, path, *arguments = job
    WRITERS[kind](Path(folder) / path, *arguments)


# -------------------------------------------------------------------------------------------------- the build


def cached_collection(folder: Path, seed: int, scale: float) -> dict | None:
    manifest = folder / MANIFEST
    try:
        collection = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    same = (collection.get("seed"), collection.get("scale"), collection.get("version")) == (seed, scale,
                                                                                            GENERATOR_VERSION)
    if same and all((folder / path).is_file() for path in collection.get("items", [])):
        return collection
    return None


def remove_previous_build(folder: Path) -> None:
    """Delete the files an earlier build listed (another seed or scale), and nothing else in the folder."""
    try:
        earlier = json.loads((folder / MANIFEST).read_text()).get("items", [])
    except (OSError, ValueError):
        return
    for path in earlier:
        (folder / path).unlink(missing_ok=True)
    (folder / MANIFEST).unlink()


def build_collection(folder: Path, seed: int = 19, scale: float = 1.0) -> dict:
    """Write the collection under `folder` and return {"items": [...], "queries": [...], "seed", "scale", ...}.

    A .collection.json already there from the same seed and scale (and generator version), with all its files,
    is returned as it is. Give it a folder of its own: files it did not list are left alone, and an index of the
    whole folder skips .collection.json as it skips every hidden file."""
    folder = Path(folder)
    collection = cached_collection(folder, seed, scale)
    if collection is not None:
        return collection
    remove_previous_build(folder)
    plan, queries = plan_collection(seed, scale)
    for sub in ("photos", "scans", "recordings", "notes"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for path, text in plan.notes.items():
        (folder / path).write_text(text, encoding="utf-8")
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        # Recordings first: each waits on two subprocesses, so they overlap well with the image work after them.
        jobs = sorted(plan.jobs, key=lambda job: job[0] != "recording")
        list(pool.map(functools.partial(run_job, str(folder)), jobs, chunksize=4))
    collection = {"version": GENERATOR_VERSION, "seed": seed, "scale": scale,
                  "items": sorted(item.path for item in plan.items), "queries": queries}
    # Written last: a build that stopped half-way has no manifest, so it is never taken for a finished one.
    (folder / MANIFEST).write_text(json.dumps(collection, indent=1))
    return collection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    started = time.perf_counter()
    collection = build_collection(args.out_dir, args.seed, args.scale)
    seconds = time.perf_counter() - started
    folders = Counter(path.split("/")[0] for path in collection["items"])
    kinds = Counter(query["kind"] for query in collection["queries"])
    print(f"{len(collection['items'])} files in {args.out_dir} ({seconds:.1f} s):",
          ", ".join(f"{name} {count}" for name, count in sorted(folders.items())))
    print(f"{len(collection['queries'])} queries:", ", ".join(f"{kind} {count}" for kind, count in kinds.items()))


if __name__ == "__main__":
    main()
