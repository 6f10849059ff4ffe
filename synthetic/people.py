"""Embedded name and place lists (fictional people; real US city/ZIP pairs).

Embedded rather than drawn from a faker library so that the same seed gives the same bytes on every
version of every dependency. Some names carry apostrophes, hyphens and non-ASCII letters on purpose.
"""

from __future__ import annotations

GIVEN_MALE = [
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas", "Charles",
    "Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew", "Joshua",
    "Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason", "Jeffrey", "Ryan",
    "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott", "Brandon",
    "José", "Luis", "Carlos", "Juan", "Miguel", "Wei", "Hiroshi", "Mohammed", "Ahmed", "Olumide",
    "Dmitri", "Søren", "François", "Andrés", "Raj", "Tuan", "Kwame", "Liam", "Noah", "Mateo",
]
GIVEN_FEMALE = [
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
    "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna", "Michelle",
    "Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia",
    "María", "Sofía", "Lucía", "Ana", "Mei", "Yuki", "Fatima", "Aisha", "Chiamaka", "Priya",
    "Zoë", "Renée", "Anaïs", "Ingrid", "Olga", "Thi", "Ama", "Emma", "Olivia", "Ava",
    "Chloé", "Maeve", "Siobhan", "Noor", "Leila", "Hana", "Camila", "Valentina", "Isabella", "Grace",
]
FAMILY = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
    "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
    "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
    "Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
    "O'Brien", "O'Connor", "McDonald", "D'Angelo", "Smith-Jones", "García-López", "Müller", "Schröder",
    "Núñez", "Peña", "Çelik", "Kowalski", "Nowak", "Ivanov", "Okafor", "Adeyemi", "Tanaka", "Yamamoto",
    "Kim", "Park", "Chen", "Wang", "Li", "Zhang", "Patel", "Shah", "Singh", "Khan", "Haddad", "Cohen",
    "Koepp", "Gusikowski", "Armstrong", "Doyle", "Toy", "Hilpert", "Lockman", "Schuster", "Bergstrom", "Kuhn",
]
MIDDLE_INITIALS = "ABCDEFGHJKLMNPRSTW"

STREET_NAMES = [
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park", "Highland", "Lincoln",
    "Church", "Spring", "Forest", "Chestnut", "Walnut", "Summer", "Winter", "Prospect", "Pleasant", "School",
    "Union", "Franklin", "Adams", "Jefferson", "Madison", "Center", "Bridge", "Mill", "River", "Water",
    "Lockman", "Beacon", "Harbor", "Cottage", "Orchard", "Meadow", "Willow", "Birch",
]
STREET_SUFFIXES = ["St", "Street", "Ave", "Avenue", "Rd", "Road", "Ln", "Way", "Dr", "Row", "Ct", "Pl"]
UNIT_PREFIXES = ["Apt", "Unit", "Suite", "#"]

# (city, state, ZIP): the first three ZIP digits (ZIP3) differ across many of these.
CITIES: list[tuple[str, str, str]] = [
    ("Boston", "MA", "02118"), ("Cambridge", "MA", "02139"), ("Quincy", "MA", "02169"),
    ("Brockton", "MA", "02301"), ("Plymouth", "MA", "02360"), ("New Bedford", "MA", "02740"),
    ("Worcester", "MA", "01608"), ("Springfield", "MA", "01103"), ("Pittsfield", "MA", "01201"),
    ("Lowell", "MA", "01852"), ("Salem", "MA", "01970"), ("Framingham", "MA", "01701"),
    ("Providence", "RI", "02903"), ("Nashua", "NH", "03060"), ("Hartford", "CT", "06103"),
    ("Portland", "ME", "04101"), ("Burlington", "VT", "05401"), ("Albany", "NY", "12207"),
    ("Peabody", "MA", "01960"), ("Fitchburg", "MA", "01420"), ("Hyannis", "MA", "02601"),
    ("Northampton", "MA", "01060"), ("Haverhill", "MA", "01830"), ("Taunton", "MA", "02780"),
]
AREA_CODES = {"MA": ["617", "508", "781", "978", "413", "857"], "RI": ["401"], "NH": ["603"], "CT": ["860"],
              "ME": ["207"], "VT": ["802"], "NY": ["518"]}
EMAIL_DOMAINS = ["example.com", "example.org", "example.net", "mail.example.com"]

HOSPITAL = {
    "name": "General Hospital of Massachusetts", "authority": "GENHOSP", "oid": "2.16.840.1.113883.3.9999.1",
    "line": "55 Fruit Street", "city": "Boston", "state": "MA", "zip": "02114", "phone": "617-555-0100",
}
CLINICS = [
    {"name": "GenHosp Primary Care Quincy", "line": "1 Hancock Street", "city": "Quincy", "state": "MA",
     "zip": "02169", "phone": "617-555-0140"},
    {"name": "GenHosp Family Medicine Worcester", "line": "20 Main Street", "city": "Worcester", "state": "MA",
     "zip": "01608", "phone": "508-555-0160"},
    {"name": "GenHosp Imaging Center Lowell", "line": "295 Varnum Avenue", "city": "Lowell", "state": "MA",
     "zip": "01854", "phone": "978-555-0180"},
]
