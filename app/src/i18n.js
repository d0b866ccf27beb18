// Text people read, in Chinese and English (the server's console does the same:
// server/src/console/i18n.rs). The language comes from the browser unless the technician
// chose one with the switch (kept in localStorage).

const TEXT = {
  title: ["fieldsync 技术员", "fieldsync technician"],
  loading: ["正在打开…", "Opening…"],
  switch_to: ["English", "中文"],
  online: ["在线", "Online"],
  offline: ["离线", "Offline"],
  connecting: ["正在连接…", "Connecting…"],
  revoked: ["此设备已被停用，不再同步", "This device was revoked: it no longer syncs"],
  enroll_heading: ["登记此设备", "Enroll this device"],
  enroll_help: [
    "输入服务台给您的一次性登记码。此设备会生成自己的密钥，私钥不离开设备。",
    "Enter the one-time code the desk gave you. This device makes its own key; the private key never leaves it.",
  ],
  code_label: ["登记码", "Enrollment code"],
  enroll_button: ["登记", "Enroll"],
  enrolling: ["正在登记…", "Enrolling…"],
  no_webcrypto: [
    "此浏览器不支持 Ed25519 密钥（WebCrypto），无法登记。",
    "This browser has no Ed25519 keys (WebCrypto): it cannot enroll.",
  ],
  enroll_offline: ["登记需要网络连接。", "Enrolling needs the network."],
  not_enrolled: ["未登记", "Not enrolled"],
  unknown_enrollment_code: [
    "服务台没有发出过这个登记码：请核对，或向服务台要一个新的。",
    "The desk issued no such code: check it, or ask the desk for a new one.",
  ],
  enrollment_code_used: [
    "这个登记码已经用过了（一个码只能登记一台设备）：请向服务台要一个新的。",
    "This code was already used (a code enrolls one device): ask the desk for a new one.",
  ],
  enrollment_code_expired: ["这个登记码已过期：请向服务台要一个新的。", "This code has expired: ask the desk for a new one."],
  invalid_enrollment_code: [
    "登记码的格式不对（12 个字母或数字，如 K7QM-2F9D-XW4T）。",
    "That is not an enrollment code (12 letters or digits, like K7QM-2F9D-XW4T).",
  ],
  unreachable: ["无法连接服务器：{message}", "Cannot reach the server: {message}"],
  device_line: ["设备 {device} · 技术员 {technician}", "Device {device} · technician {technician}"],
  jobs_heading: ["我的工单", "My jobs"],
  no_index: [
    "还没有派给您的工单。派工后会自动出现。",
    "No job assigned to you yet. Jobs appear here once the desk assigns them.",
  ],
  no_jobs: ["工单列表为空。", "The job list is empty."],
  job_loading: ["正在获取工单…", "Fetching the job…"],
  job_unreadable: ["无法读取此工单", "This job cannot be read"],
  synced: ["已同步", "Synced"],
  unsynced: ["有未同步的修改", "Changes not yet synced"],
  never_synced: ["尚未与服务器同步", "Not yet synced with the server"],
  stored: ["已存于本机", "Kept on this device"],
  status_new: ["新建", "New"],
  status_assigned: ["已预约", "Appointment agreed"],
  status_on_site: ["在现场", "On site"],
  status_completed: ["待签发", "Completed, awaiting report"],
  status_signed: ["已签发", "Report signed"],
  status_refused: ["被退回", "Report refused"],
  status_cancelled: ["已取消", "Cancelled"],
  server_error: ["服务器拒绝了修改：{message}", "The server refused a change: {message}"],
  back: ["‹ 工单列表", "‹ Jobs"],
  fault: ["故障描述", "Reported fault"],
  site: ["地址", "Site"],
  arrival: ["到达现场", "Arrival on site"],
  arrive_button: ["我已到达", "I have arrived"],
  arrived_at: ["到达于 {time}", "Arrived at {time}"],
  fault_cause: ["故障原因", "Fault cause"],
  save: ["保存", "Save"],
  saved: ["已保存在本机", "Saved on this device"],
  check_out: ["离场报备", "Check-out with the desk"],
  check_out_note: ["报备说明", "Note to the desk"],
  check_out_button: ["离场报备", "Check out"],
  checked_out_at: ["已于 {time} 报备离场", "Checked out at {time}"],
  kind_repair: ["维修", "Repair"],
  kind_installation: ["安装", "Installation"],
  kind_maintenance: ["保养", "Maintenance"],
  kind_follow_up: ["回访", "Follow-up"],
}

const KEY = "fieldsync.lang"

/** `zh` or `en`: the technician's choice, else the browser's language. */
export function language() {
  const chosen = localStorage.getItem(KEY)
  if (chosen === "zh" || chosen === "en") return chosen
  const browser = (navigator.languages?.[0] ?? navigator.language ?? "zh").toLowerCase()
  return browser.startsWith("zh") ? "zh" : "en"
}

export function setLanguage(lang) {
  localStorage.setItem(KEY, lang)
}

/** Whether there is a text for `key`. */
export function has(key) {
  return key in TEXT
}

/** The text for `key` in the current language, with `{name}` filled from `vars`. */
export function t(key, vars = {}) {
  const pair = TEXT[key]
  if (!pair) return key
  const text = pair[language() === "zh" ? 0 : 1]
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""))
}
